//! Random bytes at every service, and properties of the shared framing code. Whatever arrives,
//! the reactor must not panic, must answer the valid prefix correctly, and must keep serving.

mod common;

use std::io::{self, Write};

use common::{
    Reactor, assert_daytime_line, assert_rfc868_now, assert_tick, random_bytes, read_to_end, tcp,
    udp,
};
use inetloop::services::line::{LineReader, LineTooLong};
use inetloop::services::output::{Flushed, OutBuf};
use proptest::prelude::*;

/// What the time stream must answer to `input` (greeting cap 1024, one tick per session).
fn expected_time_reply(input: &[u8]) -> Option<bool> {
    let newline = input.iter().position(|&b| b == b'\n');
    let line = &input[..newline.unwrap_or(input.len())];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.len() > 1024 || (newline.is_none() && input.len() > 1025) {
        return Some(false); // refused: error: line too long
    }
    newline.map(|_| true) // Some(true): greeted; None: no complete greeting (EOF closes)
}

#[test]
fn random_bytes_at_every_tcp_service_get_the_right_answer() {
    let reactor = Reactor::start(&["--ticks", "1", "--interval-ms", "1"]);
    for round in 0..60u64 {
        // Short inputs often hold a newline early; long ones test the cap.
        let len = [10, 300, 1500, 5000][round as usize % 4];
        let mut input = random_bytes(len, round);
        if round % 3 == 0 {
            input.retain(|&b| b != b'\n'); // sometimes no newline at all
        }

        let mut stream = tcp(reactor.addr("time", "tcp"));
        let _ = stream.write_all(&input); // the server may refuse early and reset
        let _ = stream.shutdown(std::net::Shutdown::Write);
        let mut reply = Vec::new();
        let _ = io::Read::read_to_end(&mut stream, &mut reply);
        let text = String::from_utf8_lossy(&reply);
        match expected_time_reply(&input) {
            Some(true) => {
                let lines: Vec<&str> = text.lines().collect();
                assert_eq!(lines.len(), 2, "round {round}: {text:?}");
                assert_tick(lines[0]);
                assert_eq!(lines[1], "Au Revoir");
            }
            Some(false) => assert_eq!(text, "error: line too long\n", "round {round}"),
            None => assert_eq!(text, "", "round {round}"),
        }

        let mut stream = tcp(reactor.addr("echo", "tcp"));
        stream.write_all(&input).unwrap();
        stream.shutdown(std::net::Shutdown::Write).unwrap();
        assert!(read_to_end(&mut stream) == input, "echo round {round}");

        // Daytime and RFC 868 answer whatever arrives (or nothing) with the time, then close.
        let reply_of = |service| {
            let mut stream = tcp(reactor.addr(service, "tcp"));
            let _ = stream.write_all(&input);
            let mut reply = Vec::new();
            let _ = io::Read::read_to_end(&mut stream, &mut reply);
            assert!(!reply.is_empty(), "{service} round {round} answered");
            reply
        };
        assert_daytime_line(&reply_of("daytime"));
        assert_rfc868_now(&reply_of("rfc868"));
    }
    assert!(!reactor.log().contains("panicked"));
}

#[test]
fn random_datagrams_at_every_udp_service_get_the_right_answer() {
    let reactor = Reactor::start(&[
        "--ticks",
        "1",
        "--interval-ms",
        "1",
        "--udp-rate-per-ip",
        "0",
    ]);
    let mut buf = vec![0u8; 65_536];
    for round in 0..100u64 {
        let datagram = random_bytes((round as usize * 397) % 9000, round);

        let echo = udp(reactor.addr("echo", "udp"));
        echo.send(&datagram).unwrap();
        let n = echo.recv(&mut buf).unwrap();
        assert!(buf[..n] == datagram[..], "echo round {round}");

        let daytime = udp(reactor.addr("daytime", "udp"));
        daytime.send(&datagram).unwrap();
        let n = daytime.recv(&mut buf).unwrap();
        assert!(buf[..n].ends_with(b"\r\n"), "daytime round {round}");
        assert_daytime_line(&buf[..n]);

        let rfc868 = udp(reactor.addr("rfc868", "udp"));
        rfc868.send(&datagram).unwrap();
        let n = rfc868.recv(&mut buf).unwrap();
        assert_eq!(n, 4, "rfc868 round {round}");
        assert_rfc868_now(&buf[..n]);

        let time = udp(reactor.addr("time", "udp"));
        time.send(&datagram).unwrap();
        let n = time.recv(&mut buf).unwrap();
        assert_tick(std::str::from_utf8(&buf[..n]).unwrap());
        let n = time.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"Au Revoir");
    }
    assert!(!reactor.log().contains("panicked"));
}

/// The first line of `input` as the framer must see it, computed the obvious way.
fn reference_first_line(input: &[u8], max: usize) -> Result<Option<Vec<u8>>, LineTooLong> {
    match input.iter().position(|&b| b == b'\n') {
        Some(newline) => {
            let line = &input[..newline];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.len() > max {
                Err(LineTooLong)
            } else {
                Ok(Some(line.to_vec()))
            }
        }
        None if input.len() > max + 1 => Err(LineTooLong),
        None => Ok(None),
    }
}

/// A writer that takes a scripted number of bytes per call; 0 means "would block".
struct Scripted<'a> {
    taken: Vec<u8>,
    script: &'a [usize],
    step: usize,
}

impl Write for Scripted<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let allowance = self.script.get(self.step).copied().unwrap_or(usize::MAX);
        self.step += 1;
        if allowance == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = allowance.min(buf.len());
        self.taken.extend_from_slice(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

proptest! {
    #[test]
    fn line_reader_matches_the_reference_however_input_is_split(
        input in proptest::collection::vec(prop_oneof![Just(b'\n'), Just(b'\r'), any::<u8>()], 0..80),
        cuts in proptest::collection::vec(0usize..80, 0..6),
        max in 0usize..20,
    ) {
        let mut cuts: Vec<usize> = cuts.into_iter().filter(|&c| c <= input.len()).collect();
        cuts.sort_unstable();
        cuts.push(input.len());
        let mut reader = LineReader::new(max);
        let mut start = 0;
        let mut outcome = Ok(None);
        for cut in cuts {
            if cut < start { continue; }
            outcome = reader.feed(&input[start..cut]).map(|found| found.map(|(line, _)| line));
            start = cut;
            if !matches!(outcome, Ok(None)) { break; }
        }
        prop_assert_eq!(outcome, reference_first_line(&input, max));
    }

    #[test]
    fn out_buf_keeps_order_and_its_limit_under_any_write_pattern(
        pushes in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..20),
        script in proptest::collection::vec(0usize..30, 0..40),
        limit in 1usize..100,
    ) {
        let mut out = OutBuf::new(limit);
        let mut writer = Scripted { taken: Vec::new(), script: &script, step: 0 };
        let mut accepted = Vec::new();
        for bytes in &pushes {
            if out.push(bytes).is_ok() {
                accepted.extend_from_slice(bytes);
            }
            prop_assert!(out.len() <= limit);
            let before = out.len();
            let (flushed, written) = out.write_to(&mut writer).unwrap();
            prop_assert_eq!(before - out.len(), written);
            prop_assert_eq!(flushed == Flushed::All, out.is_empty());
        }
        writer.script = &[];
        out.write_to(&mut writer).unwrap();
        prop_assert_eq!(writer.taken, accepted);
    }
}
