//! The PROXY protocol header (haproxy's `proxy-protocol.txt`, versions 1 and 2), parsed as a
//! pure function of the bytes: no socket, no clock.
//!
//! A TCP load balancer (haproxy, nginx's `stream` module) that relays a client's connection opens
//! its own connection to us, so the address `accept(2)` reports is the balancer's. With the PROXY
//! protocol the balancer writes, before the first byte of the client's, one header that names the
//! client: a text line in version 1, a binary block in version 2.
//!
//! ```text
//! v1:  PROXY TCP4 192.0.2.7 198.51.100.1 56324 8081\r\n          (at most 107 bytes, CRLF included)
//!      PROXY TCP6 2001:db8::7 2001:db8::1 56324 8081\r\n
//!      PROXY UNKNOWN\r\n                                            (the balancer does not know)
//! v2:  \r\n\r\n\0\r\nQUIT\n  ver|cmd  family|transport  length(16 bits)  addresses  TLVs…
//!      └──── 12-byte signature ───┘  0x21 PROXY         0x11 TCP/IPv4      12 bytes
//!                                    0x20 LOCAL         0x21 TCP/IPv6      36 bytes
//! ```
//!
//! [`parse`] looks at everything received so far and answers [`Status::NeedMore`], a complete
//! [`Header`] with its length, or why the bytes can never be one ([`Malformed`]); it rejects as
//! early as the bytes allow (a first byte that is neither `P` nor `\r` is refused at once, a v2
//! length past the bound as soon as the length is in). [`HeaderReader`] keeps the bytes of a
//! header that arrives in pieces, at most [`PROXY_HEADER_MAX`] of them, and says how many bytes
//! of the latest piece were header: the rest belong to the service.
//!
//! What is accepted, following the specification:
//!
//! - **v1**: `PROXY`, one space, `TCP4` or `TCP6`, then source address, destination address,
//!   source port, destination port, each after exactly one space, then CRLF. Addresses in their
//!   canonical form for the family (IPv4: no leading zeros), ports decimal 0 to 65535 without
//!   leading zeros. `UNKNOWN` accepts anything up to the CRLF. No CRLF within 107 bytes, or a CR
//!   or LF alone, is malformed.
//! - **v2**: version 2 only; command LOCAL (a connection the balancer made itself, e.g. a health
//!   check: its addresses are ignored) or PROXY. TCP over IPv4 or IPv6 gives the client's
//!   address; the other valid families (UNSPEC, UDP, UNIX) fall back to "unknown", as the
//!   specification allows: the real endpoint is used. Family or transport values it does not
//!   define are malformed. TLVs after the addresses are skipped. The whole header may be at
//!   most [`PROXY_HEADER_MAX`] bytes.
//!
//! An IPv4 client carried as an IPv4-mapped IPv6 address (`::ffff:192.0.2.7`) is reported as the
//! IPv4 address it is.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

/// The longest header accepted, in bytes: the smallest TCP segment every host must take
/// (576 − 40), which the specification designs both versions to fit in. A v1 line is at most
/// 107 bytes; a v2 header is 16 bytes and its declared length, so a v2 header declaring more
/// than 520 bytes (of addresses and TLVs) is refused as soon as its length field arrives.
pub const PROXY_HEADER_MAX: usize = 536;
/// The longest v1 line, CRLF included (`PROXY UNKNOWN` with two full IPv6 addresses and ports).
pub const V1_MAX: usize = 107;
/// What starts a v1 header.
const V1_PREFIX: &[u8] = b"PROXY ";
/// What starts a v2 header.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// Signature, version and command, family and transport, length.
const V2_FIXED: usize = 16;

/// Whom the header says the connection is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Relayed for this client (v1 `TCP4`/`TCP6`, v2 PROXY over TCP/IPv4 or TCP/IPv6).
    Client(SocketAddr),
    /// v2 LOCAL: the balancer's own connection (a health check). The peer is the balancer.
    Local,
    /// v1 `UNKNOWN`, or v2 PROXY with a family this server does not use (UNSPEC, UDP, UNIX): the
    /// balancer gives no usable address, so the peer is the balancer.
    Unknown,
}

/// A complete, valid header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// 1 (text) or 2 (binary).
    pub version: u8,
    pub origin: Origin,
}

impl Header {
    /// The client's address, if the header names one.
    pub fn client(&self) -> Option<SocketAddr> {
        match self.origin {
            Origin::Client(addr) => Some(addr),
            Origin::Local | Origin::Unknown => None,
        }
    }
}

impl std::fmt::Display for Header {
    /// `PROXY v1`, `PROXY v2 LOCAL`, `PROXY v1 UNKNOWN`: for log lines.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PROXY v{}", self.version)?;
        match self.origin {
            Origin::Client(_) => Ok(()),
            Origin::Local => f.write_str(" LOCAL"),
            Origin::Unknown => f.write_str(" UNKNOWN"),
        }
    }
}

/// Why the bytes are not, and can never become, a valid header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Malformed {
    /// The bytes start like neither version's signature; `at` is the first byte that differs.
    NoSignature { at: usize },
    /// No CRLF within the first [`V1_MAX`] bytes of a v1 line.
    V1TooLong,
    /// A v1 line that does not follow the grammar; says where.
    V1Syntax(&'static str),
    /// A v2 version other than 2 (the high nibble of byte 13).
    V2Version(u8),
    /// A v2 command other than LOCAL (0) or PROXY (1).
    V2Command(u8),
    /// A v2 family or transport the specification does not define (byte 14).
    V2Family(u8),
    /// A v2 header longer than [`PROXY_HEADER_MAX`]: the declared length of what follows the
    /// 16 fixed bytes.
    V2TooLong(u16),
    /// A v2 length too short for the addresses its family needs.
    V2Short { family: u8, length: u16 },
}

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Malformed::NoSignature { at } => write!(
                f,
                "no PROXY signature (byte {at} is neither v1's \"PROXY \" nor v2's)"
            ),
            Malformed::V1TooLong => write!(f, "v1 line without CRLF in its first {V1_MAX} bytes"),
            Malformed::V1Syntax(what) => write!(f, "v1 line: {what}"),
            Malformed::V2Version(v) => write!(f, "v2 header with version {v}"),
            Malformed::V2Command(c) => write!(f, "v2 header with unknown command {c:#x}"),
            Malformed::V2Family(b) => write!(f, "v2 header with unknown family/transport {b:#04x}"),
            Malformed::V2TooLong(len) => write!(
                f,
                "v2 header of {} bytes (at most {PROXY_HEADER_MAX})",
                V2_FIXED + usize::from(len)
            ),
            Malformed::V2Short { family, length } => write!(
                f,
                "v2 header too short ({length} bytes) for family {family:#04x}"
            ),
        }
    }
}

/// What [`parse`] makes of the bytes received so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Valid so far; the header is not complete.
    NeedMore,
    /// A complete header, `length` bytes long: the bytes after it are the client's.
    Done {
        header: Header,
        length: usize,
    },
    Malformed(Malformed),
}

/// Parses the start of a connection's input: everything received so far, from its first byte.
pub fn parse(buf: &[u8]) -> Status {
    match buf.first() {
        None => Status::NeedMore,
        Some(b'P') => parse_v1(buf),
        Some(b'\r') => parse_v2(buf),
        Some(_) => Status::Malformed(Malformed::NoSignature { at: 0 }),
    }
}

/// Whether `buf` starts like `prefix` as far as both go; else the first byte that differs.
fn check_prefix(buf: &[u8], prefix: &[u8]) -> Result<(), Malformed> {
    match buf.iter().zip(prefix).position(|(got, want)| got != want) {
        Some(at) => Err(Malformed::NoSignature { at }),
        None => Ok(()),
    }
}

fn parse_v1(buf: &[u8]) -> Status {
    if let Err(bad) = check_prefix(buf, V1_PREFIX) {
        return Status::Malformed(bad);
    }
    let window = buf.get(..buf.len().min(V1_MAX)).unwrap_or_default();
    let Some(end) = window.iter().position(|&b| b == b'\r' || b == b'\n') else {
        return if buf.len() >= V1_MAX {
            Status::Malformed(Malformed::V1TooLong)
        } else {
            Status::NeedMore
        };
    };
    if window.get(end) == Some(&b'\n') {
        return Status::Malformed(Malformed::V1Syntax("LF without CR"));
    }
    // The CR is at `end`; its LF must be the next byte, within the 107.
    if end + 2 > V1_MAX {
        return Status::Malformed(Malformed::V1TooLong);
    }
    match buf.get(end + 1) {
        None => Status::NeedMore,
        Some(b'\n') => match buf.get(..end).map(parse_v1_line) {
            Some(Ok(origin)) => Status::Done {
                header: Header { version: 1, origin },
                length: end + 2,
            },
            Some(Err(what)) => Status::Malformed(Malformed::V1Syntax(what)),
            None => Status::Malformed(Malformed::V1Syntax("no line")),
        },
        Some(_) => Status::Malformed(Malformed::V1Syntax("CR without LF")),
    }
}

/// The v1 line without its CRLF.
fn parse_v1_line(line: &[u8]) -> Result<Origin, &'static str> {
    let rest = line.strip_prefix(V1_PREFIX).ok_or("no \"PROXY \"")?;
    if rest == b"UNKNOWN" || rest.starts_with(b"UNKNOWN ") {
        // "the receiver must ignore anything presented before the CRLF"
        return Ok(Origin::Unknown);
    }
    let text = std::str::from_utf8(rest).map_err(|_| "not ASCII")?;
    let fields: Vec<&str> = text.split(' ').collect();
    let [protocol, source, destination, source_port, destination_port] = fields[..] else {
        return Err("not PROTOCOL SRC DST SPORT DPORT, separated by single spaces");
    };
    let ip = match protocol {
        "TCP4" => {
            let ip = Ipv4Addr::from_str(source).map_err(|_| "source is not an IPv4 address")?;
            // Canonical form only: no leading zeros (they would read as octal elsewhere).
            if ip.to_string() != source {
                return Err("source is not a canonical IPv4 address");
            }
            parse_v1_destination(destination, true)?;
            IpAddr::V4(ip)
        }
        "TCP6" => {
            let ip = Ipv6Addr::from_str(source).map_err(|_| "source is not an IPv6 address")?;
            parse_v1_destination(destination, false)?;
            canonical(IpAddr::V6(ip))
        }
        _ => return Err("protocol is not TCP4, TCP6 or UNKNOWN"),
    };
    let port = parse_v1_port(source_port).ok_or("source port is not 0 to 65535")?;
    parse_v1_port(destination_port).ok_or("destination port is not 0 to 65535")?;
    Ok(Origin::Client(SocketAddr::new(ip, port)))
}

/// The destination address is not used, but it must be valid for the family.
fn parse_v1_destination(text: &str, v4: bool) -> Result<(), &'static str> {
    let valid = if v4 {
        Ipv4Addr::from_str(text).is_ok_and(|ip| ip.to_string() == text)
    } else {
        Ipv6Addr::from_str(text).is_ok()
    };
    if valid {
        Ok(())
    } else {
        Err("destination is not an address of the protocol's family")
    }
}

/// Decimal, 0 to 65535, no sign, no leading zero.
fn parse_v1_port(text: &str) -> Option<u16> {
    let digits = !text.is_empty() && text.len() <= 5 && text.bytes().all(|b| b.is_ascii_digit());
    if !digits || (text.len() > 1 && text.starts_with('0')) {
        return None;
    }
    u16::from_str(text).ok()
}

fn parse_v2(buf: &[u8]) -> Status {
    if let Err(bad) = check_prefix(buf, &V2_SIGNATURE) {
        return Status::Malformed(bad);
    }
    // Each fixed byte is checked as soon as it is in, so a bad header is refused early.
    let Some(&version_command) = buf.get(12) else {
        return Status::NeedMore;
    };
    if version_command >> 4 != 2 {
        return Status::Malformed(Malformed::V2Version(version_command >> 4));
    }
    let local = match version_command & 0x0f {
        0 => true,
        1 => false,
        other => return Status::Malformed(Malformed::V2Command(other)),
    };
    let Some(&family) = buf.get(13) else {
        return Status::NeedMore;
    };
    // LOCAL: "discard the protocol block including the family which is ignored".
    if !local && (family >> 4 > 3 || family & 0x0f > 2) {
        return Status::Malformed(Malformed::V2Family(family));
    }
    let (Some(&high), Some(&low)) = (buf.get(14), buf.get(15)) else {
        return Status::NeedMore;
    };
    let declared = u16::from_be_bytes([high, low]);
    let length = V2_FIXED + usize::from(declared);
    if length > PROXY_HEADER_MAX {
        return Status::Malformed(Malformed::V2TooLong(declared));
    }
    let Some(block) = buf.get(V2_FIXED..length) else {
        return Status::NeedMore;
    };
    let origin = if local {
        Origin::Local
    } else {
        match v2_client(family, block) {
            Ok(origin) => origin,
            Err(bad) => return Status::Malformed(bad),
        }
    };
    Status::Done {
        header: Header { version: 2, origin },
        length,
    }
}

/// The client named by a v2 PROXY header's address block (TLVs, if any, follow and are skipped).
fn v2_client(family: u8, block: &[u8]) -> Result<Origin, Malformed> {
    let short = || Malformed::V2Short {
        family,
        length: u16::try_from(block.len()).unwrap_or(u16::MAX),
    };
    let needed = match family {
        0x11 => 12,
        0x21 => 36,
        _ => 0,
    };
    if block.len() < needed {
        return Err(short());
    }
    let ip = match family {
        // TCP over IPv4: source, destination (4 bytes each), source port, destination port.
        0x11 => {
            let source: [u8; 4] = array(block, 0).ok_or_else(short)?;
            let port: [u8; 2] = array(block, 8).ok_or_else(short)?;
            SocketAddr::new(IpAddr::from(source), u16::from_be_bytes(port))
        }
        // TCP over IPv6: the same with 16-byte addresses.
        0x21 => {
            let source: [u8; 16] = array(block, 0).ok_or_else(short)?;
            let port: [u8; 2] = array(block, 32).ok_or_else(short)?;
            let ip = canonical(IpAddr::from(source));
            SocketAddr::new(ip, u16::from_be_bytes(port))
        }
        // UNSPEC, UDP, UNIX: valid, but no TCP client address; the specification lets a
        // receiver that does not implement them fall back to UNSPEC (the real endpoints).
        _ => return Ok(Origin::Unknown),
    };
    Ok(Origin::Client(ip))
}

/// `N` bytes of `block` from `at`, if they are there.
fn array<const N: usize>(block: &[u8], at: usize) -> Option<[u8; N]> {
    block.get(at..at.checked_add(N)?)?.try_into().ok()
}

/// An IPv4-mapped IPv6 address as the IPv4 address it carries.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// What [`HeaderReader::feed`] made of one more piece of input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Every byte of the piece was header, and more is needed.
    NeedMore,
    /// The header is complete: the first `consumed` bytes of the piece were its end, and the
    /// rest of the piece belongs to the service.
    Done {
        header: Header,
        consumed: usize,
    },
    Malformed(Malformed),
}

/// The bytes of a header that arrives in pieces, at most [`PROXY_HEADER_MAX`] of them. Feed it
/// each piece as it is read; a header split at any byte parses as it would whole.
pub struct HeaderReader {
    buf: [u8; PROXY_HEADER_MAX],
    len: usize,
}

impl Default for HeaderReader {
    fn default() -> Self {
        HeaderReader {
            buf: [0; PROXY_HEADER_MAX],
            len: 0,
        }
    }
}

impl HeaderReader {
    /// At most this many more bytes can belong to the header: a read sized to it never takes a
    /// byte the service would have to get from somewhere else than that read.
    pub fn room(&self) -> usize {
        PROXY_HEADER_MAX - self.len
    }

    /// Takes one more piece of input (only what may still be header is kept).
    pub fn feed(&mut self, piece: &[u8]) -> Progress {
        let before = self.len;
        let take = piece.len().min(self.room());
        if let (Some(dst), Some(src)) = (self.buf.get_mut(before..before + take), piece.get(..take))
        {
            dst.copy_from_slice(src);
            self.len += take;
        }
        match parse(self.buf.get(..self.len).unwrap_or_default()) {
            // Both versions bound themselves below the buffer's size, so a full buffer is never
            // "need more"; said anyway, should that ever change.
            Status::NeedMore if self.len >= PROXY_HEADER_MAX => {
                Progress::Malformed(Malformed::V2TooLong(u16::MAX))
            }
            Status::NeedMore => Progress::NeedMore,
            Status::Done { header, length } => Progress::Done {
                header,
                consumed: length.saturating_sub(before),
            },
            Status::Malformed(bad) => Progress::Malformed(bad),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    fn done(header: Header, length: usize) -> Status {
        Status::Done { header, length }
    }

    fn client(version: u8, text: &str) -> Header {
        Header {
            version,
            origin: Origin::Client(addr(text)),
        }
    }

    /// A v2 header: version/command, family, the address block and TLVs as given.
    fn v2(version_command: u8, family: u8, block: &[u8]) -> Vec<u8> {
        let mut out = V2_SIGNATURE.to_vec();
        out.push(version_command);
        out.push(family);
        out.extend_from_slice(&(block.len() as u16).to_be_bytes());
        out.extend_from_slice(block);
        out
    }

    fn v2_ipv4(source: [u8; 4], port: u16, tlvs: &[u8]) -> Vec<u8> {
        let mut block = source.to_vec();
        block.extend_from_slice(&[198, 51, 100, 1]);
        block.extend_from_slice(&port.to_be_bytes());
        block.extend_from_slice(&8081u16.to_be_bytes());
        block.extend_from_slice(tlvs);
        v2(0x21, 0x11, &block)
    }

    fn v2_ipv6(source: Ipv6Addr, port: u16, tlvs: &[u8]) -> Vec<u8> {
        let mut block = source.octets().to_vec();
        block.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        block.extend_from_slice(&port.to_be_bytes());
        block.extend_from_slice(&8081u16.to_be_bytes());
        block.extend_from_slice(tlvs);
        v2(0x21, 0x21, &block)
    }

    #[test]
    fn v1_lines_name_the_client() {
        let line = b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 8081\r\nhello";
        assert_eq!(
            parse(line),
            done(client(1, "192.0.2.7:56324"), line.len() - 5)
        );
        let line = b"PROXY TCP6 2001:db8::7 2001:DB8::1 65535 0\r\n";
        assert_eq!(
            parse(line),
            done(client(1, "[2001:db8::7]:65535"), line.len())
        );
        let mapped = b"PROXY TCP6 ::ffff:192.0.2.7 ::1 1 2\r\n";
        assert_eq!(
            parse(mapped),
            done(client(1, "192.0.2.7:1"), mapped.len()),
            "a mapped address is its IPv4 address"
        );
    }

    #[test]
    fn v1_unknown_uses_the_real_endpoints_whatever_follows() {
        let unknown = Header {
            version: 1,
            origin: Origin::Unknown,
        };
        assert_eq!(parse(b"PROXY UNKNOWN\r\n"), done(unknown, 15));
        let worst = format!(
            "PROXY UNKNOWN {0} {0} 65535 65535\r\n",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
        );
        assert_eq!(worst.len(), V1_MAX, "the specification's worst case");
        assert_eq!(parse(worst.as_bytes()), done(unknown, V1_MAX));
    }

    #[test]
    fn v1_lines_that_break_the_grammar_are_refused() {
        let bad = |line: &[u8]| match parse(line) {
            Status::Malformed(why) => why,
            other => panic!("{:?} gave {other:?}", String::from_utf8_lossy(line)),
        };
        for line in [
            &b"PROXY TCP4 192.0.2.7 198.51.100.1 56324\r\n"[..], // a field missing
            b"PROXY TCP4 192.0.2.7  198.51.100.1 1 2\r\n",       // two spaces
            b"PROXY TCP4 192.0.2.07 198.51.100.1 1 2\r\n",       // a leading zero
            b"PROXY TCP4 2001:db8::1 198.51.100.1 1 2\r\n",      // wrong family
            b"PROXY TCP6 192.0.2.7 ::1 1 2\r\n",                 // wrong family
            b"PROXY TCP4 192.0.2.7 ::1 1 2\r\n",                 // destination's family
            b"PROXY TCP4 192.0.2.7 198.51.100.1 65536 2\r\n",    // port too large
            b"PROXY TCP4 192.0.2.7 198.51.100.1 01 2\r\n",       // port with a leading zero
            b"PROXY TCP4 192.0.2.7 198.51.100.1 +1 2\r\n",       // a sign
            b"PROXY TCP4 192.0.2.7 198.51.100.1 1 2 \r\n",       // a trailing space
            b"PROXY UDP4 192.0.2.7 198.51.100.1 1 2\r\n",        // not TCP
            b"PROXY \r\n",
        ] {
            assert!(matches!(bad(line), Malformed::V1Syntax(_)));
        }
        assert_eq!(
            bad(b"PROXY TCP4 1.2.3.4 1.2.3.4 1 2\n"),
            Malformed::V1Syntax("LF without CR")
        );
        assert_eq!(
            bad(b"PROXY TCP4 1.2.3.4 1.2.3.4 1 2\rX"),
            Malformed::V1Syntax("CR without LF")
        );
        assert_eq!(bad(&[b'P'; 2]), Malformed::NoSignature { at: 1 });
        assert_eq!(bad(b"PROXYTCP4"), Malformed::NoSignature { at: 5 });
        let long = [b"PROXY ".as_slice(), &[b'x'; 101]].concat();
        assert_eq!(long.len(), V1_MAX);
        assert_eq!(bad(&long), Malformed::V1TooLong);
        // A CR as the 107th byte: its LF would be the 108th.
        let mut late = [b"PROXY ".as_slice(), &[b'x'; 100]].concat();
        late.push(b'\r');
        assert_eq!(bad(&late), Malformed::V1TooLong);
        assert_eq!(parse(&late[..V1_MAX - 1]), Status::NeedMore);
    }

    #[test]
    fn the_first_byte_decides_at_once() {
        assert_eq!(parse(b""), Status::NeedMore);
        assert_eq!(
            parse(b"G"),
            Status::Malformed(Malformed::NoSignature { at: 0 })
        );
        assert_eq!(parse(b"P"), Status::NeedMore);
        assert_eq!(parse(b"\r"), Status::NeedMore);
        assert_eq!(
            parse(b"\r\n\r\n\x01"),
            Status::Malformed(Malformed::NoSignature { at: 4 })
        );
    }

    #[test]
    fn v2_headers_name_the_client_and_skip_tlvs() {
        let header = v2_ipv4([192, 0, 2, 7], 56324, &[]);
        assert_eq!(parse(&header), done(client(2, "192.0.2.7:56324"), 28));
        // A NOOP TLV and a unique-id TLV, skipped.
        let tlvs = [0x04, 0, 2, 0, 0, 0x05, 0, 3, 1, 2, 3];
        let header = v2_ipv4([192, 0, 2, 7], 1, &tlvs);
        assert_eq!(parse(&header), done(client(2, "192.0.2.7:1"), 28 + 11));
        let ip: Ipv6Addr = "2001:db8::7".parse().unwrap();
        let header = v2_ipv6(ip, 443, &[]);
        assert_eq!(parse(&header), done(client(2, "[2001:db8::7]:443"), 52));
        let mapped = v2_ipv6(Ipv4Addr::new(192, 0, 2, 7).to_ipv6_mapped(), 9, &[]);
        assert_eq!(parse(&mapped), done(client(2, "192.0.2.7:9"), 52));
    }

    #[test]
    fn v2_local_and_unsupported_families_use_the_real_endpoints() {
        let local = Header {
            version: 2,
            origin: Origin::Local,
        };
        assert_eq!(parse(&v2(0x20, 0x00, &[])), done(local, 16));
        // LOCAL ignores the family and skips whatever addresses it carries, even nonsense.
        assert_eq!(parse(&v2(0x20, 0xff, &[1, 2, 3])), done(local, 19));
        let unknown = Header {
            version: 2,
            origin: Origin::Unknown,
        };
        for family in [0x00, 0x12, 0x22, 0x31, 0x32, 0x10] {
            assert_eq!(parse(&v2(0x21, family, &[0; 12])), done(unknown, 28));
        }
    }

    #[test]
    fn v2_headers_outside_the_specification_are_refused_early() {
        let bad = |bytes: &[u8]| match parse(bytes) {
            Status::Malformed(why) => why,
            other => panic!("{bytes:?} gave {other:?}"),
        };
        let header = v2_ipv4([192, 0, 2, 7], 1, &[]);
        let mut version = header[..13].to_vec();
        version[12] = 0x11;
        assert_eq!(bad(&version), Malformed::V2Version(1), "byte 13 is enough");
        let mut command = header[..13].to_vec();
        command[12] = 0x22;
        assert_eq!(bad(&command), Malformed::V2Command(2));
        for family in [0x13, 0x41, 0xf1] {
            let mut wrong = header[..14].to_vec();
            wrong[13] = family;
            assert_eq!(bad(&wrong), Malformed::V2Family(family));
        }
        // The bound is checked as soon as the length is in: 16 + 521 > 536.
        let mut long = header[..14].to_vec();
        long.extend_from_slice(&521u16.to_be_bytes());
        assert_eq!(bad(&long), Malformed::V2TooLong(521));
        let mut longest = header[..14].to_vec();
        longest.extend_from_slice(&520u16.to_be_bytes());
        assert_eq!(
            parse(&longest),
            Status::NeedMore,
            "536 bytes in all is fine"
        );
        assert_eq!(
            bad(&v2(0x21, 0x11, &[0; 11])),
            Malformed::V2Short {
                family: 0x11,
                length: 11
            }
        );
        assert_eq!(
            bad(&v2(0x21, 0x21, &[0; 35])),
            Malformed::V2Short {
                family: 0x21,
                length: 35
            }
        );
    }

    #[test]
    fn the_reader_hands_back_the_bytes_after_the_header() {
        let mut reader = HeaderReader::default();
        let line = b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 8081\r\n";
        assert_eq!(reader.feed(&line[..10]), Progress::NeedMore);
        assert_eq!(reader.room(), PROXY_HEADER_MAX - 10);
        let rest = [&line[10..], b"hello".as_slice()].concat();
        assert_eq!(
            reader.feed(&rest),
            Progress::Done {
                header: client(1, "192.0.2.7:56324"),
                consumed: line.len() - 10
            }
        );
    }

    /// A valid header of either version with its expected parse, from generated parts.
    fn any_header() -> impl Strategy<Value = (Vec<u8>, Header)> {
        let v1_v4 =
            (any::<u32>(), any::<u32>(), any::<u16>(), any::<u16>()).prop_map(|(s, d, sp, dp)| {
                let (s, d) = (Ipv4Addr::from(s), Ipv4Addr::from(d));
                let line = format!("PROXY TCP4 {s} {d} {sp} {dp}\r\n");
                (
                    line.into_bytes(),
                    Header {
                        version: 1,
                        origin: Origin::Client(SocketAddr::new(s.into(), sp)),
                    },
                )
            });
        let v1_v6 = (
            any::<u128>(),
            any::<u128>(),
            any::<u16>(),
            any::<u16>(),
            any::<bool>(),
        )
            .prop_map(|(s, d, sp, dp, upper)| {
                let (s, d) = (Ipv6Addr::from(s), Ipv6Addr::from(d));
                let mut text = format!("{s} {d}");
                if upper {
                    text = text.to_uppercase();
                }
                let line = format!("PROXY TCP6 {text} {sp} {dp}\r\n");
                let origin = Origin::Client(SocketAddr::new(canonical(s.into()), sp));
                (line.into_bytes(), Header { version: 1, origin })
            });
        let v1_unknown = "[ -~]{0,91}".prop_map(|junk| {
            let line = format!("PROXY UNKNOWN {junk}\r\n");
            let header = Header {
                version: 1,
                origin: Origin::Unknown,
            };
            (line.into_bytes(), header)
        });
        let tlvs = prop::collection::vec(any::<u8>(), 0..=200);
        let v2_v4 = (any::<[u8; 4]>(), any::<u16>(), tlvs.clone()).prop_map(|(s, sp, tlvs)| {
            let origin = Origin::Client(SocketAddr::new(IpAddr::from(s), sp));
            (v2_ipv4(s, sp, &tlvs), Header { version: 2, origin })
        });
        let v2_v6 = (any::<u128>(), any::<u16>(), tlvs.clone()).prop_map(|(s, sp, tlvs)| {
            let ip = Ipv6Addr::from(s);
            let origin = Origin::Client(SocketAddr::new(canonical(ip.into()), sp));
            (v2_ipv6(ip, sp, &tlvs), Header { version: 2, origin })
        });
        let v2_other = (
            prop::sample::select(vec![
                (0x20u8, 0x00u8),
                (0x20, 0x11),
                (0x21, 0x00),
                (0x21, 0x12),
                (0x21, 0x32),
            ]),
            prop::collection::vec(any::<u8>(), 0..=520),
        )
            .prop_map(|((command, family), block)| {
                let origin = if command == 0x20 {
                    Origin::Local
                } else {
                    Origin::Unknown
                };
                (v2(command, family, &block), Header { version: 2, origin })
            });
        prop_oneof![v1_v4, v1_v6, v1_unknown, v2_v4, v2_v6, v2_other]
    }

    /// Feeds `pieces` one after the other; the outcome and the bytes handed on.
    fn feed_all(pieces: &[&[u8]]) -> (Progress, Vec<u8>) {
        let mut reader = HeaderReader::default();
        for (n, piece) in pieces.iter().enumerate() {
            match reader.feed(piece) {
                Progress::NeedMore => continue,
                Progress::Done { header, consumed } => {
                    let mut after = piece[consumed..].to_vec();
                    for later in &pieces[n + 1..] {
                        after.extend_from_slice(later);
                    }
                    return (
                        Progress::Done {
                            header,
                            consumed: 0,
                        },
                        after,
                    );
                }
                bad => return (bad, Vec::new()),
            }
        }
        (Progress::NeedMore, Vec::new())
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_and_are_judged_the_same_in_any_pieces(
            bytes in prop::collection::vec(any::<u8>(), 0..700),
            prefix in prop::sample::select(vec![&b""[..], b"PROXY ", b"PROXY TCP4 ", &V2_SIGNATURE[..], b"\r\n\r\n\0\r\nQUIT\n\x21\x11"]),
            cut in any::<prop::sample::Index>(),
        ) {
            let bytes = [prefix, &bytes].concat();
            let whole = parse(&bytes);
            let cut = cut.index(bytes.len() + 1);
            let (split, _) = feed_all(&[&bytes[..cut], &bytes[cut..]]);
            let (at_once, _) = feed_all(&[&bytes]);
            prop_assert_eq!(split, at_once);
            if let Status::Done { length, .. } = whole {
                prop_assert!(length <= PROXY_HEADER_MAX);
            }
        }

        #[test]
        fn a_valid_header_split_anywhere_parses_as_whole_and_keeps_what_follows(
            (header, expected) in any_header(),
            trailer in prop::collection::vec(any::<u8>(), 0..64),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..4),
        ) {
            prop_assert!(header.len() <= PROXY_HEADER_MAX);
            let stream = [header.as_slice(), &trailer].concat();
            prop_assert_eq!(
                parse(&stream),
                Status::Done { header: expected, length: header.len() }
            );
            let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
            cuts.sort();
            let mut pieces = Vec::new();
            let mut start = 0;
            for cut in cuts {
                pieces.push(&stream[start..cut]);
                start = cut;
            }
            pieces.push(&stream[start..]);
            let (outcome, after) = feed_all(&pieces);
            prop_assert_eq!(outcome, Progress::Done { header: expected, consumed: 0 });
            prop_assert_eq!(after, trailer);
        }

        #[test]
        fn a_valid_header_fed_byte_by_byte_needs_every_byte(
            (header, expected) in any_header(),
        ) {
            let mut reader = HeaderReader::default();
            for (n, byte) in header.iter().enumerate() {
                let progress = reader.feed(std::slice::from_ref(byte));
                if n + 1 < header.len() {
                    prop_assert_eq!(progress, Progress::NeedMore, "after {} bytes", n + 1);
                } else {
                    prop_assert_eq!(progress, Progress::Done { header: expected, consumed: 1 });
                }
            }
        }
    }
}
