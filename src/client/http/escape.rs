//! Showing what a server sent without letting it drive the terminal.
//!
//! A response head is text chosen by the server. Printed raw, it could carry terminal control
//! sequences: `ESC [ 2 J` clears the screen, `ESC ] 0 ; … BEL` retitles the window, and the
//! C1 control `CSI` (byte `0x9b` on 8-bit terminals, U+009B on UTF-8 ones) starts the same
//! sequences without an ESC. So everything shown of a head, and every error message that
//! quotes server bytes, goes through [`escape_text`], which lets only printable ASCII through:
//!
//! | input                                                  | shown as            |
//! |--------------------------------------------------------|---------------------|
//! | printable ASCII, `0x20`–`0x7e` (backslash included)     | itself              |
//! | an ASCII control `0x00`–`0x1f` (CR, LF, tab too), DEL   | `\xHH`, e.g. `\x1b` |
//! | a byte that is not part of valid UTF-8 (raw `0x9b`)     | `\xHH`, e.g. `\x9b` |
//! | a non-ASCII character, C1 controls U+0080–U+009F too   | `\u{H…}`, e.g. `\u{9b}`, `\u{e9}` |
//!
//! `H` is a lowercase hex digit. Non-ASCII characters are escaped even when printable: HTTP
//! field values are ASCII (RFC 9110 §5.5 keeps other bytes only as obsolete, opaque
//! `obs-text`), and the UTF-8 form of many characters contains bytes `0x80`–`0x9f`, which an
//! 8-bit terminal reads as C1 controls. So the shown text is printable ASCII and nothing else,
//! whatever the terminal. A backslash is not escaped (printable ASCII passes unchanged), so a
//! server can write text that *looks* like an escape, but never a real control byte.
//!
//! [`escape_head`] applies this line by line and keeps each line's own ending (`\r\n`, or a
//! bare `\n`), so an ordinary head prints exactly as received; a CR, LF or tab inside a line
//! is escaped.
//!
//! The body is not escaped: it is the user's download (a file, an image), passed through
//! byte for byte, as curl does.

use std::fmt::Write as _;

/// `bytes` as printable ASCII: see the [module documentation](self) for the rules.
pub fn escape_text(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                ' '..='~' => out.push(c),
                // `write!` to a String cannot fail.
                _ if c.is_ascii() => {
                    let _ = write!(out, "\\x{:02x}", u32::from(c));
                }
                _ => {
                    let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
                }
            }
        }
        for byte in chunk.invalid() {
            let _ = write!(out, "\\x{byte:02x}");
        }
    }
    out
}

/// A response head as printable lines: each line's content through [`escape_text`], followed
/// by the line's own ending (`\r\n` or `\n`) unchanged. The result holds no control bytes but
/// those line endings.
pub fn escape_head(raw: &[u8]) -> String {
    let mut out = String::with_capacity(raw.len());
    for line in raw.split_inclusive(|&b| b == b'\n') {
        let (content, ending) = if let Some(content) = line.strip_suffix(b"\r\n") {
            (content, "\r\n")
        } else if let Some(content) = line.strip_suffix(b"\n") {
            (content, "\n")
        } else {
            (line, "")
        };
        out.push_str(&escape_text(content));
        out.push_str(ending);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_ascii_is_unchanged() {
        let all: String = (' '..='~').collect();
        assert_eq!(escape_text(all.as_bytes()), all);
        assert_eq!(escape_text(br"C:\x1b"), r"C:\x1b");
    }

    #[test]
    fn controls_are_escaped() {
        assert_eq!(escape_text(b"\x1b[31mred\x07"), r"\x1b[31mred\x07");
        assert_eq!(
            escape_text(b"a\tb\rc\nd\0\x7f"),
            r"a\x09b\x0dc\x0ad\x00\x7f"
        );
        // C1: a raw byte (not UTF-8) and the UTF-8 encoding of U+009B.
        assert_eq!(escape_text(b"\x9b2J \xc2\x9b2J"), r"\x9b2J \u{9b}2J");
        assert_eq!(escape_text("\u{80}\u{9f}".as_bytes()), r"\u{80}\u{9f}");
    }

    #[test]
    fn other_non_ascii_is_escaped_by_code_point_or_byte() {
        assert_eq!(escape_text("café €".as_bytes()), r"caf\u{e9} \u{20ac}");
        assert_eq!(escape_text(b"caf\xe9"), r"caf\xe9");
        // A truncated UTF-8 sequence is invalid: each of its bytes is shown.
        assert_eq!(escape_text(b"\xe2\x82"), r"\xe2\x82");
    }

    #[test]
    fn head_keeps_line_endings_and_escapes_inside_lines() {
        let ordinary = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(escape_head(ordinary).as_bytes(), ordinary);
        assert_eq!(escape_head(b"HTTP/1.0 200 OK\n\n"), "HTTP/1.0 200 OK\n\n");
        assert_eq!(
            escape_head(b"HTTP/1.1 200 OK\r\nX: a\rb\tc\x1b]0;t\x07\r\r\n\r\n"),
            "HTTP/1.1 200 OK\r\nX: a\\x0db\\x09c\\x1b]0;t\\x07\\x0d\r\n\r\n"
        );
        assert_eq!(escape_head(b"no ending\x1b"), r"no ending\x1b");
    }
}
