//! Property tests of the parts of the HTTP client that read what a server sends.
//!
//! Hand-written cases check the inputs someone thought of; these generate thousands:
//! - arbitrary bytes, cut into arbitrary reads, never make the response reader or the chunked
//!   decoder panic (and the reader always finishes: every input here ends);
//! - any valid chunked encoding of any data (random chunk sizes, hex case, leading zeros,
//!   extensions, trailers), read in any pieces, decodes back to exactly that data and stops
//!   at the end of the body.

use std::io::{self, Read};

use inetloop::client::http::{ChunkedDecoder, HttpError, ResponseReader};
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

proptest! {
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
