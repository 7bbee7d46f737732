//! Echo streaming: `--conns` connections, each writing `--write`-byte chunks as fast as the
//! kernel takes them while reading the echo back; measures echoed bytes per second.
//!
//! The stream is a known pattern (byte `i` is `i mod 251`), and the first and last byte of
//! every read are checked against it: a server that drops, duplicates or reorders bytes is
//! caught without the cost of comparing every byte. One thread, one mio loop.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use crate::common::{self, Failures, Report};

const PATTERN: usize = 251;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

pub struct Args {
    addr: SocketAddr,
    conns: usize,
    write: usize,
    secs: f64,
}

impl Args {
    pub fn parse(mut args: pico_args::Arguments) -> Result<Self, String> {
        let parsed = Args {
            addr: common::addr(&mut args, "--addr")?,
            conns: common::opt(&mut args, "--conns", 50)?,
            write: common::opt(&mut args, "--write", 16384)?,
            secs: common::opt(&mut args, "--secs", 10.0)?,
        };
        common::finish(args)?;
        if parsed.conns == 0 || parsed.write == 0 || parsed.secs <= 0.0 {
            return Err("--conns, --write and --secs must be positive".into());
        }
        Ok(parsed)
    }
}

struct Conn {
    stream: TcpStream,
    /// Bytes written so far (the pattern position of the next byte to write).
    sent: u64,
    /// Bytes of echo read so far.
    echoed: u64,
    open: bool,
}

impl Conn {
    /// Writes chunks until the kernel is full.
    fn write_some(&mut self, pattern: &[u8], chunk: usize) -> io::Result<()> {
        loop {
            let at = (self.sent % PATTERN as u64) as usize;
            match self.stream.write(&pattern[at..at + chunk]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.sent += n as u64,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads until drained, checking the ends of each read against the pattern.
    fn read_some(&mut self, scratch: &mut [u8]) -> io::Result<()> {
        loop {
            match self.stream.read(scratch) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "server closed",
                    ));
                }
                Ok(n) => {
                    let expect = |offset: u64| ((self.echoed + offset) % PATTERN as u64) as u8;
                    if scratch[0] != expect(0) || scratch[n - 1] != expect(n as u64 - 1) {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "echo differs from what was sent",
                        ));
                    }
                    self.echoed += n as u64;
                    if self.echoed > self.sent {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "more echo than was sent",
                        ));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

pub fn run(args: Args) -> Result<Report, String> {
    common::raise_nofile();
    let mut poll = Poll::new().map_err(|e| format!("poll: {e}"))?;
    let mut events = Events::with_capacity(1024);
    let pattern: Vec<u8> = (0..args.write + PATTERN)
        .map(|i| (i % PATTERN) as u8)
        .collect();
    let mut scratch = vec![0u8; 256 * 1024];
    let mut failures = Failures::default();
    let mut list = Vec::new();
    for _ in 0..args.conns {
        let token = Token(list.len());
        let connected =
            std::net::TcpStream::connect_timeout(&args.addr, CONNECT_TIMEOUT).and_then(|std| {
                std.set_nodelay(true)?;
                std.set_nonblocking(true)?;
                let mut stream = TcpStream::from_std(std);
                poll.registry().register(
                    &mut stream,
                    token,
                    Interest::READABLE | Interest::WRITABLE,
                )?;
                Ok(stream)
            });
        match connected {
            Ok(stream) => list.push(Conn {
                stream,
                sent: 0,
                echoed: 0,
                open: true,
            }),
            Err(e) => failures.add(format!("connect: {e}")),
        }
    }
    let start = Instant::now();
    let cpu_start = common::cpu_time();
    let end = start + Duration::from_secs_f64(args.secs);
    // The first writable edge comes with registration, so every connection starts writing.
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        match poll.poll(&mut events, Some(end - now)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("poll: {e}")),
        }
        for event in events.iter() {
            let Some(conn) = list.get_mut(event.token().0) else {
                continue;
            };
            if !conn.open {
                continue;
            }
            let mut result = Ok(());
            if event.is_readable() || event.is_read_closed() || event.is_error() {
                result = conn.read_some(&mut scratch);
            }
            if result.is_ok() && event.is_writable() {
                result = conn.write_some(&pattern, args.write);
            }
            if let Err(e) = result {
                failures.add(e.to_string());
                conn.open = false;
            }
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = common::cpu_time().saturating_sub(cpu_start);
    let echoed: u64 = list.iter().map(|c| c.echoed).sum();
    let sent: u64 = list.iter().map(|c| c.sent).sum();
    let mut report = Report::new("stream");
    report
        .put("conns", args.conns)
        .put("write", args.write)
        .num("secs", elapsed, 3)
        .put("bytes_sent", sent)
        .put("bytes_echoed", echoed)
        .num("mb_per_s", echoed as f64 / elapsed / 1e6, 1)
        .put("failed", failures.total())
        .put("failures", &failures)
        .num("client_cpu_s", cpu.as_secs_f64(), 3)
        .num("client_cpu_pct", cpu.as_secs_f64() / elapsed * 100.0, 1);
    Ok(report)
}
