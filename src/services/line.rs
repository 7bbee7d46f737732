//! Line framing for the services that read lines (the time stream's greeting).
//!
//! [`LineReader`] collects one line of input up to a length cap. Like mini-redis's
//! `Frame::check`/`Frame::parse`, it first looks for the newline within the cap and only then
//! takes the line, so a peer that never sends a newline costs at most the cap, never more.

/// The line is longer than the reader's cap (the cap counts the text, not the `\r\n`).
#[derive(Debug, PartialEq, Eq)]
pub struct LineTooLong;

/// Accumulates bytes until a `\n`, refusing lines longer than `max_len` bytes.
#[derive(Debug)]
pub struct LineReader {
    partial: Vec<u8>,
    max_len: usize,
}

impl LineReader {
    pub fn new(max_len: usize) -> Self {
        LineReader {
            partial: Vec::new(),
            max_len,
        }
    }

    /// Feeds `input`. Returns the first complete line (without its `\n` or `\r\n`) and how many
    /// bytes of `input` it used, or `None` when more input is needed, or [`LineTooLong`] as soon
    /// as the line cannot fit — without buffering more than `max_len + 1` bytes.
    pub fn feed(&mut self, input: &[u8]) -> Result<Option<(Vec<u8>, usize)>, LineTooLong> {
        // One extra byte may be a '\r' whose '\n' has not arrived yet.
        let limit = self.max_len + 1;
        let mut pieces = input.splitn(2, |&b| b == b'\n');
        let before_newline = pieces.next().unwrap_or_default();
        match pieces.next() {
            Some(_after_newline) => {
                if self.partial.len() + before_newline.len() > limit {
                    return Err(LineTooLong);
                }
                self.partial.extend_from_slice(before_newline);
                let mut line = std::mem::take(&mut self.partial);
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                if line.len() > self.max_len {
                    return Err(LineTooLong);
                }
                Ok(Some((line, before_newline.len() + 1)))
            }
            None => {
                if self.partial.len() + input.len() > limit {
                    return Err(LineTooLong);
                }
                self.partial.extend_from_slice(input);
                Ok(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_reader_takes_first_line_and_strips_crlf() {
        let mut lines = LineReader::new(16);
        assert_eq!(lines.feed(b"Bon"), Ok(None));
        assert_eq!(
            lines.feed(b"jour\r\nrest"),
            Ok(Some((b"Bonjour".to_vec(), 6)))
        );
        assert_eq!(lines.feed(b"\n"), Ok(Some((Vec::new(), 1))));
    }

    #[test]
    fn line_reader_cap_is_exact() {
        let fits = [b'a'; 8];
        assert_eq!(
            LineReader::new(8).feed(&[&fits[..], b"\r\n"].concat()),
            Ok(Some((fits.to_vec(), 10)))
        );
        assert_eq!(
            LineReader::new(8).feed(&[&fits[..], b"a\n"].concat()),
            Err(LineTooLong)
        );
        // Without a newline the verdict comes as soon as the cap (plus a possible '\r') is passed.
        let mut lines = LineReader::new(8);
        assert_eq!(lines.feed(&fits), Ok(None));
        assert_eq!(lines.feed(b"\r"), Ok(None));
        assert_eq!(lines.feed(b"x"), Err(LineTooLong));
    }
}
