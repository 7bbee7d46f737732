//! Decoding `Transfer-Encoding: chunked`, the framing a server uses when it does not know the
//! body's length before it starts sending.
//!
//! ```text
//! 5;name=value\r\n      chunk size in hex, optional extensions (ignored)
//! hello\r\n             that many bytes of data, then CRLF
//! 0\r\n                 the last chunk has size 0
//! Expires: never\r\n    optional trailer fields (ignored)
//! \r\n                  an empty line ends the body
//! ```
//!
//! The decoder is a state machine fed whatever bytes a `read` returned, however the stream was
//! cut: a size line may arrive one byte at a time, data may span many reads. It holds no
//! buffer of its own; framing bytes are looked at one by one, data is handed back as a slice
//! of the input, so the caller can write it out without copying. A bare LF is accepted where
//! CRLF is expected, as RFC 9112 §2.2 allows a recipient to.

use super::HttpError;

/// The longest chunk-size line (size plus extensions) or trailer line accepted. Real ones are
/// a few dozen bytes; the cap turns a server that is not sending chunked framing at all into
/// a clear error instead of an endless line.
const MAX_LINE: usize = 8 * 1024;

/// Where the decoder is in the chunked stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Reading the hex digits of a chunk size; `digits` counts them (at least one needed).
    Size { size: u64, digits: usize },
    /// After the size: whitespace and `;name=value` extensions, skipped to the end of line.
    Extension { size: u64 },
    /// A CR ended the size line; an LF must follow.
    SizeLf { size: u64 },
    /// Inside a chunk's data, with this many bytes still to come.
    Data { remaining: u64 },
    /// The chunk's data is complete; CRLF must follow.
    DataEnd,
    /// The CR after the data came; an LF must follow.
    DataLf,
    /// At the start of a trailer line, or of the empty line that ends the body.
    TrailerStart,
    /// Inside a trailer field line.
    Trailer,
    /// A CR ended a trailer line (`empty`: the final, empty one); an LF must follow.
    TrailerLf { empty: bool },
    /// The empty line after the last chunk was read: the body is complete.
    Done,
}

/// Turns a chunked body back into the bytes the server meant to send.
#[derive(Debug)]
pub struct ChunkedDecoder {
    state: State,
    /// Bytes of the current framing line, held against [`MAX_LINE`].
    line_len: usize,
    /// Data bytes decoded so far, to say how far a truncated body got.
    body_len: u64,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedDecoder {
    pub fn new() -> Self {
        ChunkedDecoder {
            state: State::Size { size: 0, digits: 0 },
            line_len: 0,
            body_len: 0,
        }
    }

    /// Consumes framing bytes from the start of `input` up to the next run of chunk data, and
    /// returns how many bytes of `input` were used and that data (a subslice, possibly empty).
    /// Call again with the rest of `input` until it is used up or [`ChunkedDecoder::is_done`].
    pub fn decode<'a>(&mut self, input: &'a [u8]) -> Result<(usize, &'a [u8]), HttpError> {
        for (used, &byte) in input.iter().enumerate() {
            match self.state {
                State::Done => return Ok((used, &[])),
                State::Data { remaining } => {
                    let rest = input.get(used..).unwrap_or_default();
                    // Both values fit in usize: `rest.len()` is a slice length.
                    let take = remaining.min(rest.len() as u64) as usize;
                    let data = rest.get(..take).unwrap_or_default();
                    self.body_len += take as u64;
                    self.state = match remaining - take as u64 {
                        0 => State::DataEnd,
                        remaining => State::Data { remaining },
                    };
                    return Ok((used + take, data));
                }
                _ => self.step(byte)?,
            }
        }
        Ok((input.len(), &[]))
    }

    /// True once the whole body, trailers included, has been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// The error for a connection that closed before [`ChunkedDecoder::is_done`].
    pub fn truncated(&self) -> HttpError {
        HttpError::BadResponse(format!(
            "connection closed before the end of the chunked body (after {} body bytes)",
            self.body_len
        ))
    }

    /// Advances the state machine over one framing byte.
    fn step(&mut self, byte: u8) -> Result<(), HttpError> {
        self.line_len += 1;
        if self.line_len > MAX_LINE {
            return Err(invalid(&format!("a line exceeds {MAX_LINE} bytes")));
        }
        self.state = match (self.state, byte) {
            (State::Size { size, digits }, _) if byte.is_ascii_hexdigit() => {
                let digit = u64::from((byte as char).to_digit(16).unwrap_or_default());
                let size = size
                    .checked_mul(16)
                    .and_then(|size| size.checked_add(digit))
                    .ok_or_else(|| invalid("chunk size overflows 64 bits"))?;
                State::Size {
                    size,
                    digits: digits + 1,
                }
            }
            (State::Size { digits: 0, .. }, _) => {
                return Err(invalid("chunk size line does not start with a hex digit"));
            }
            (State::Size { size, .. }, b';' | b' ' | b'\t') => State::Extension { size },
            (State::Size { size, .. } | State::Extension { size }, b'\r') => State::SizeLf { size },
            (
                State::Size { size, .. } | State::Extension { size } | State::SizeLf { size },
                b'\n',
            ) => {
                self.line_len = 0;
                match size {
                    0 => State::TrailerStart,
                    remaining => State::Data { remaining },
                }
            }
            (State::Size { .. }, _) => return Err(invalid("unexpected byte after chunk size")),
            (State::Extension { size }, _) => State::Extension { size },
            (State::DataEnd, b'\r') => State::DataLf,
            (State::DataEnd | State::DataLf, b'\n') => {
                self.line_len = 0;
                State::Size { size: 0, digits: 0 }
            }
            (State::DataEnd, _) => {
                return Err(invalid(
                    "chunk data not followed by CRLF (longer than its size?)",
                ));
            }
            (State::TrailerStart, b'\r') => State::TrailerLf { empty: true },
            (State::Trailer, b'\r') => State::TrailerLf { empty: false },
            (State::TrailerStart | State::TrailerLf { empty: true }, b'\n') => State::Done,
            (State::Trailer | State::TrailerLf { empty: false }, b'\n') => {
                self.line_len = 0;
                State::TrailerStart
            }
            (State::TrailerStart | State::Trailer, _) => State::Trailer,
            (State::SizeLf { .. } | State::DataLf | State::TrailerLf { .. }, _) => {
                return Err(invalid("CR not followed by LF"));
            }
            // `decode` handles these two states without calling `step`.
            (State::Data { .. } | State::Done, _) => self.state,
        };
        Ok(())
    }
}

fn invalid(why: &str) -> HttpError {
    HttpError::BadResponse(format!("invalid chunked body: {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces of `piece` bytes; returns the data and whether the body ended.
    fn decode_in_pieces(input: &[u8], piece: usize) -> Result<(Vec<u8>, bool), HttpError> {
        let mut decoder = ChunkedDecoder::new();
        let mut body = Vec::new();
        for mut chunk in input.chunks(piece) {
            while !chunk.is_empty() && !decoder.is_done() {
                let (used, data) = decoder.decode(chunk)?;
                body.extend_from_slice(data);
                chunk = &chunk[used..];
            }
        }
        Ok((body, decoder.is_done()))
    }

    fn decode_all(input: &[u8]) -> Result<(Vec<u8>, bool), HttpError> {
        decode_in_pieces(input, input.len().max(1))
    }

    #[test]
    fn decodes_chunks_extensions_and_trailers_in_any_split() {
        let input = b"5;name=value\r\nhello\r\n1 ; x=\"q\"\r\n,\r\n6\r\n world\r\n0\r\nExpires: never\r\nX: y\r\n\r\nNEXT";
        for piece in 1..=input.len() {
            let (body, done) = decode_in_pieces(input, piece).unwrap();
            assert_eq!(
                (body.as_slice(), done),
                (&b"hello, world"[..], true),
                "piece {piece}"
            );
        }
    }

    #[test]
    fn stops_at_the_end_of_the_body() {
        let mut decoder = ChunkedDecoder::new();
        let input = b"0\r\n\r\nleftover";
        let mut used_total = 0;
        while !decoder.is_done() {
            let (used, data) = decoder.decode(&input[used_total..]).unwrap();
            assert!(data.is_empty());
            used_total += used;
        }
        assert_eq!(&input[used_total..], b"leftover");
    }

    #[test]
    fn accepts_bare_lf_and_upper_case_hex() {
        let (body, done) = decode_all(b"A\n0123456789\n0\n\n").unwrap();
        assert_eq!((body.as_slice(), done), (&b"0123456789"[..], true));
    }

    #[test]
    fn an_incomplete_stream_is_not_done() {
        for input in [
            &b""[..],
            b"5\r\nhel",
            b"5\r\nhello\r\n",
            b"0\r\n",
            b"0\r\nX: y\r\n",
        ] {
            let (_, done) = decode_all(input).unwrap();
            assert!(!done, "{input:?}");
        }
        let mut decoder = ChunkedDecoder::new();
        decoder.decode(b"3\r\nab").unwrap();
        assert_eq!(
            decoder.truncated().to_string(),
            "connection closed before the end of the chunked body (after 2 body bytes)"
        );
    }

    #[test]
    fn rejects_malformed_framing_with_the_reason() {
        let error = |input: &[u8]| decode_all(input).unwrap_err().to_string();
        assert!(error(b"xyz\r\n").contains("does not start with a hex digit"));
        assert!(error(b"\r\n").contains("does not start with a hex digit"));
        assert!(error(b"5x\r\n").contains("unexpected byte after chunk size"));
        assert!(error(b"5\rX").contains("CR not followed by LF"));
        assert!(error(b"2\r\nabc\r\n").contains("chunk data not followed by CRLF"));
        assert!(error(b"2\r\nab\rX").contains("CR not followed by LF"));
        assert!(error(b"0\r\nX: y\rZ").contains("CR not followed by LF"));
        assert!(error(b"10000000000000000\r\n").contains("overflows 64 bits"));
        let long_extension = [&b"1;"[..], &[b'x'; MAX_LINE]].concat();
        assert!(error(&long_extension).contains("exceeds 8192 bytes"));
    }

    #[test]
    fn largest_chunk_size_is_accepted() {
        let mut decoder = ChunkedDecoder::new();
        let (used, data) = decoder.decode(b"ffffffffffffffff\r\nab").unwrap();
        assert_eq!((used, data), (20, &b"ab"[..]));
        assert!(!decoder.is_done());
    }
}
