//! Property tests of the parts of the HTTP client that read what a server sends.
//!
//! Hand-written cases check the inputs someone thought of; these generate thousands:
//! - arbitrary bytes, cut into arbitrary reads, never make the response reader or the chunked
//!   decoder panic (and the reader always finishes: every input here ends);
//! - any valid chunked encoding of any data (random chunk sizes, hex case, leading zeros,
//!   extensions, trailers), read in any pieces, decodes back to exactly that data and stops
//!   at the end of the body;
//! - escaping what a server sent for printing never lets a control byte through (C0, DEL, C1
//!   as a raw byte or in UTF-8), leaves printable ASCII as it is, and keeps a head's line
//!   endings.

use std::io::{self, Read};

use inetloop::client::http::{ChunkedDecoder, HttpError, ResponseReader, escape_head, escape_text};
use proptest::prelude::*;

/// A source that returns `data` in reads of the given sizes (cycled), as a socket might.
struct Pieces {
    data: Vec<u8>,
    sizes: Vec<usize>,
    read: usize,
    calls: usize,
}

impl Pieces {
    fn new(data: Vec<u8>, sizes: Vec<usize>) -> Self {
        Pieces {
            data,
            sizes,
            read: 0,
            calls: 0,
        }
    }
}

impl Read for Pieces {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let size = self.sizes[self.calls % self.sizes.len()];
        self.calls += 1;
        let rest = &self.data[self.read..];
        let n = size.min(rest.len()).min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.read += n;
        Ok(n)
    }
}

/// Reads one response (head, then body for `method`) and returns the body.
fn read_response(source: Pieces, method: &str) -> Result<Vec<u8>, HttpError> {
    let mut reader = ResponseReader::new(source);
    let head = reader.read_head()?;
    let mut body = Vec::new();
    reader.copy_body(&head, method, &mut body)?;
    Ok(body)
}

/// Feeds `input` to a fresh decoder in pieces of the given sizes (cycled). Returns the data,
/// whether the body ended, and how many bytes of `input` were consumed.
fn decode(input: &[u8], sizes: &[usize]) -> Result<(Vec<u8>, bool, usize), HttpError> {
    let mut decoder = ChunkedDecoder::new();
    let mut body = Vec::new();
    let mut consumed = 0;
    let mut size = sizes.iter().cycle();
    while consumed < input.len() && !decoder.is_done() {
        let end = (consumed + size.next().copied().unwrap_or(1)).min(input.len());
        let mut piece = &input[consumed..end];
        while !piece.is_empty() && !decoder.is_done() {
            let (used, data) = decoder.decode(piece)?;
            assert!(used <= piece.len(), "used more than it was given");
            assert!(used > 0 || decoder.is_done(), "made no progress");
            body.extend_from_slice(data);
            piece = &piece[used..];
            consumed += used;
        }
    }
    Ok((body, decoder.is_done(), consumed))
}

fn read_sizes() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(1usize..200, 1..8)
}

/// One chunk as a server might frame it: hex case, leading zeros, extensions.
#[derive(Debug, Clone)]
struct ChunkStyle {
    upper: bool,
    zeros: usize,
    extensions: String,
}

fn chunk_style() -> impl Strategy<Value = ChunkStyle> {
    (
        any::<bool>(),
        0usize..3,
        "( ?;[a-zA-Z0-9]{1,8}(=([a-zA-Z0-9]{0,8}|\"[ a-z;=]{0,8}\"))?){0,3}",
    )
        .prop_map(|(upper, zeros, extensions)| ChunkStyle {
            upper,
            zeros,
            extensions,
        })
}

/// A chunk-size line for a chunk of `len` bytes, written in `style`.
fn size_line(len: usize, style: &ChunkStyle) -> String {
    let hex = if style.upper {
        format!("{len:X}")
    } else {
        format!("{len:x}")
    };
    format!("{}{hex}{}\r\n", "0".repeat(style.zeros), style.extensions)
}

/// Encodes `data` as chunks of the given sizes with the given styles (both cycled), then the
/// last chunk, the trailers and the final empty line.
fn encode_chunked(
    data: &[u8],
    sizes: &[usize],
    styles: &[ChunkStyle],
    trailers: &[String],
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = data;
    let mut n = 0;
    while !rest.is_empty() {
        let (chunk, after) = rest.split_at(sizes[n % sizes.len()].min(rest.len()));
        out.extend_from_slice(size_line(chunk.len(), &styles[n % styles.len()]).as_bytes());
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
        rest = after;
        n += 1;
    }
    out.extend_from_slice(size_line(0, &styles[n % styles.len()]).as_bytes());
    for trailer in trailers {
        out.extend_from_slice(trailer.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// A control byte on some terminal: C0 (0x00-0x1f), DEL, or C1 (0x80-0x9f, which is also
/// what the UTF-8 forms of U+0080-U+009F consist of after their 0xc2 lead byte).
fn is_control_byte(byte: u8) -> bool {
    byte < 0x20 || byte == 0x7f || (0x80..=0x9f).contains(&byte)
}

/// Bytes a hostile server might send: mostly controls, ESC sequences, C1 (raw and UTF-8),
/// other UTF-8 and invalid UTF-8, with some printable ASCII in between.
fn hostile_bytes() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        any::<u8>().prop_map(|b| vec![b]),
        (0u8..0x20).prop_map(|b| vec![b]),
        (0x80u8..0xa0).prop_map(|b| vec![b]),
        (0x80u32..0xa0).prop_map(|c| char::from_u32(c).unwrap_or('?').to_string().into_bytes()),
        any::<char>().prop_map(|c| c.to_string().into_bytes()),
        Just(b"\x1b[31m".to_vec()),
        Just(b"\x1b]0;title\x07".to_vec()),
        Just(b"\r\n".to_vec()),
        "[ -~]{0,8}".prop_map(String::into_bytes),
    ];
    prop::collection::vec(piece, 0..64).prop_map(|pieces| pieces.concat())
}

proptest! {
    #[test]
    fn escaping_never_emits_a_control_byte(bytes in hostile_bytes()) {
        let text = escape_text(&bytes);
        prop_assert!(
            !text.bytes().any(is_control_byte),
            "control byte in {:?}", text
        );
        // Stronger still: only printable ASCII.
        prop_assert!(text.bytes().all(|b| (0x20..0x7f).contains(&b)), "{:?}", text);
    }

    #[test]
    fn escaping_leaves_printable_ascii_unchanged(text in "[ -~]{0,200}") {
        prop_assert_eq!(escape_text(text.as_bytes()), text);
    }

    #[test]
    fn escaping_is_unchanged_exactly_for_printable_ascii(bytes in hostile_bytes()) {
        let unchanged = escape_text(&bytes).as_bytes() == bytes.as_slice();
        prop_assert_eq!(unchanged, bytes.iter().all(|b| (0x20..0x7f).contains(b)));
    }

    #[test]
    fn escaped_head_has_controls_only_in_line_endings(
        lines in prop::collection::vec((hostile_bytes(), any::<bool>()), 0..8),
    ) {
        let raw: Vec<u8> = lines
            .iter()
            .flat_map(|(line, crlf)| {
                let ending: &[u8] = if *crlf { b"\r\n" } else { b"\n" };
                [line.as_slice(), ending].concat()
            })
            .collect();
        let shown = escape_head(&raw);
        // The same number of LFs: each one a line ending, none invented, none lost.
        prop_assert_eq!(
            shown.bytes().filter(|&b| b == b'\n').count(),
            raw.iter().filter(|&&b| b == b'\n').count()
        );
        for line in shown.split_inclusive('\n') {
            let content = line
                .strip_suffix("\r\n")
                .or_else(|| line.strip_suffix('\n'))
                .unwrap_or(line);
            prop_assert!(!content.bytes().any(is_control_byte), "{:?}", line);
        }
    }

    #[test]
    fn escaped_head_of_printable_lines_is_unchanged(
        lines in prop::collection::vec(("[ -~]{0,40}", any::<bool>()), 0..8),
    ) {
        let raw: String = lines
            .iter()
            .map(|(line, crlf)| format!("{line}{}", if *crlf { "\r\n" } else { "\n" }))
            .collect();
        prop_assert_eq!(escape_head(raw.as_bytes()), raw);
    }

    #[test]
    fn response_reader_never_panics_on_arbitrary_bytes(
        bytes in prop::collection::vec(any::<u8>(), 0..2048),
        sizes in read_sizes(),
        head_request in any::<bool>(),
    ) {
        let method = if head_request { "HEAD" } else { "GET" };
        let _ = read_response(Pieces::new(bytes, sizes), method);
    }

    #[test]
    fn response_reader_never_panics_after_a_valid_head(
        head in prop::sample::select(vec![
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n",
            "HTTP/1.1 100 Continue\r\n\r\n",
            "HTTP/1.1 200 OK\r\n",
        ]),
        bytes in prop::collection::vec(any::<u8>(), 0..2048),
        sizes in read_sizes(),
    ) {
        let input = [head.as_bytes(), &bytes].concat();
        let _ = read_response(Pieces::new(input, sizes), "GET");
    }

    #[test]
    fn chunked_decoder_never_panics_on_arbitrary_bytes(
        bytes in prop::collection::vec(any::<u8>(), 0..2048),
        sizes in read_sizes(),
    ) {
        let _ = decode(&bytes, &sizes);
    }

    #[test]
    fn chunked_decoder_never_panics_on_hex_heavy_bytes(
        bytes in prop::collection::vec(
            prop::sample::select(b"0123456789abcdefF;= \r\n\t\"xX".to_vec()), 0..512),
        sizes in read_sizes(),
    ) {
        let _ = decode(&bytes, &sizes);
    }

    #[test]
    fn any_valid_chunked_encoding_decodes_exactly(
        data in prop::collection::vec(any::<u8>(), 0..4096),
        chunk_sizes in prop::collection::vec(1usize..700, 1..10),
        styles in prop::collection::vec(chunk_style(), 1..5),
        trailers in prop::collection::vec("[A-Za-z-]{1,10}: [ -~]{0,20}", 0..3),
        sizes in read_sizes(),
    ) {
        let encoded = encode_chunked(&data, &chunk_sizes, &styles, &trailers);
        let after = b"HTTP/1.1 200 OK\r\n\r\n";
        let stream = [&encoded[..], after].concat();

        let (body, done, consumed) = decode(&stream, &sizes).expect("a valid encoding");
        prop_assert!(done);
        prop_assert_eq!(consumed, encoded.len(), "stops right after the final empty line");
        prop_assert_eq!(&body, &data);

        // The same through the response reader, as a socket would deliver it.
        let response = [&b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"[..], &encoded].concat();
        let body = read_response(Pieces::new(response, sizes), "GET").expect("a valid response");
        prop_assert_eq!(body, data);
    }
}
