//! Proof with clients nobody here wrote: `rdate`, OpenBSD `nc` and `socat` against every
//! service. Each test names the tool it needs and fails, saying how to install it, when the tool
//! is missing — `.ci/run` installs them, so CI always runs these.

mod common;

use std::path::Path;
use std::process::Output;

use common::{Reactor, assert_daytime_line, assert_tick, random_bytes, run};

/// The path of `tool`, or a failure that says how to get it.
fn require(tool: &str, package: &str) -> String {
    let dirs = std::env::var("PATH").unwrap_or_default();
    dirs.split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin"])
        .map(|dir| Path::new(dir).join(tool))
        .find(|path| path.is_file())
        .map(|path| path.to_string_lossy().into_owned())
        .unwrap_or_else(|| {
            panic!(
                "this test needs `{tool}`: apt-get update && apt-get install -y {package} \
                 (.ci/run installs it)"
            )
        })
}

/// OpenBSD netcat: the tests use its `-N` (half-close at end of input).
fn require_openbsd_nc() -> String {
    let nc = require("nc", "netcat-openbsd");
    let help = run(&nc, &["-h"], b"");
    assert!(
        String::from_utf8_lossy(&help.stderr).contains("OpenBSD"),
        "this test needs OpenBSD netcat, not {nc}'s flavour: apt-get install -y netcat-openbsd"
    );
    nc
}

fn success(output: Output) -> Vec<u8> {
    assert!(
        output.status.success(),
        "exit {:?}, stderr {:?}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

fn port(reactor: &Reactor, service: &str, proto: &str) -> String {
    reactor.addr(service, proto).port().to_string()
}

/// `rdate -p` prints e.g. `Wed Nov 25 19:41:16 UTC 2026`; checks it is within 5 s of now.
fn assert_rdate_says_now(stdout: &[u8]) {
    let text = String::from_utf8_lossy(stdout);
    let words: Vec<&str> = text.split_whitespace().collect();
    assert_eq!(words.len(), 6, "unexpected rdate output {text:?}");
    // Drop the zone name (chrono cannot parse names); we ran rdate with TZ=UTC.
    let without_zone = format!(
        "{} {} {} {} {}",
        words[0], words[1], words[2], words[3], words[5]
    );
    let printed = chrono::NaiveDateTime::parse_from_str(&without_zone, "%a %b %e %H:%M:%S %Y")
        .unwrap_or_else(|e| panic!("rdate printed {text:?}: {e}"));
    let skew = (chrono::Utc::now().naive_utc() - printed)
        .num_seconds()
        .abs();
    assert!(skew <= 5, "rdate says {text:?}, {skew} s from now");
}

#[test]
fn rdate_reads_rfc868_time_over_tcp_and_udp() {
    let rdate = require("rdate", "rdate");
    let reactor = Reactor::start(&[]);
    let tcp_port = port(&reactor, "rfc868", "tcp");
    let udp_port = port(&reactor, "rfc868", "udp");
    for args in [
        vec!["-p", "-o", &tcp_port, "127.0.0.1"],
        vec!["-p", "-u", "-o", &udp_port, "127.0.0.1"],
    ] {
        let mut with_tz = vec!["TZ=UTC", rdate.as_str()];
        with_tz.extend(&args);
        assert_rdate_says_now(&success(run("/usr/bin/env", &with_tz, b"")));
    }
}

#[test]
fn nc_reads_daytime_over_tcp_and_udp() {
    let nc = require_openbsd_nc();
    let reactor = Reactor::start(&[]);
    let tcp = success(run(
        &nc,
        &["-N", "127.0.0.1", &port(&reactor, "daytime", "tcp")],
        b"",
    ));
    let udp = success(run(
        &nc,
        &["-u", "-w1", "127.0.0.1", &port(&reactor, "daytime", "udp")],
        b"\n",
    ));
    assert_daytime_line(&tcp);
    assert_daytime_line(&udp);
}

#[test]
fn nc_gets_echo_and_the_whole_time_stream() {
    let nc = require_openbsd_nc();
    let reactor = Reactor::start(&["--ticks", "3", "--interval-ms", "100"]);
    let echo = success(run(
        &nc,
        &["-N", "127.0.0.1", &port(&reactor, "echo", "tcp")],
        b"hello\nworld\n",
    ));
    assert_eq!(echo, b"hello\nworld\n");

    let stream = success(run(
        &nc,
        &["-N", "127.0.0.1", &port(&reactor, "time", "tcp")],
        b"Bonjour\n",
    ));
    let text = String::from_utf8(stream).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text:?}");
    for tick in &lines[..3] {
        assert_tick(tick);
    }
    assert_eq!(lines[3], "Au Revoir");
}

#[test]
fn socat_echoes_binary_data_exactly_over_tcp_and_udp() {
    let socat = require("socat", "socat");
    let reactor = Reactor::start(&[]);
    let data = random_bytes(1 << 20, 42);
    let tcp = format!("TCP:{}", reactor.addr("echo", "tcp"));
    let echoed = success(run(&socat, &["-t", "5", "-", &tcp], &data));
    assert!(
        echoed == data,
        "TCP: {} of {} bytes came back intact",
        echoed.len(),
        data.len()
    );

    let datagram = random_bytes(4000, 43);
    let udp = format!("UDP:{}", reactor.addr("echo", "udp"));
    let echoed = success(run(
        &socat,
        &["-t", "1", "-b", "8192", "-", &udp],
        &datagram,
    ));
    assert!(echoed == datagram, "UDP: got {} bytes back", echoed.len());
}
