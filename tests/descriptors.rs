//! The descriptor limit at start (PROTOCOLS.md §6.1): the reactor raises its soft
//! `RLIMIT_NOFILE` to the hard limit and logs the figures, refuses a `--max-conns` the limit
//! cannot hold (exit 2, one line naming the flag, the limit and the largest value that fits),
//! and lowers its own default to what fits, with a warning. Each reactor runs under a limit of
//! the test's choosing, set between fork and exec, so the machine's own limit does not matter.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use common::{IO_TIMEOUT, Reactor, poll_for, tcp};

/// Makes the reactor start with `RLIMIT_NOFILE` `soft`:`hard` (a process may lower both).
fn with_nofile(soft: u64, hard: u64) -> impl FnOnce(&mut Command) {
    move |command| {
        // SAFETY: setrlimit is async-signal-safe, which is all pre_exec requires.
        unsafe {
            command.pre_exec(move || {
                let limit = libc::rlimit {
                    rlim_cur: soft,
                    rlim_max: hard,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
    }
}

/// Runs a reactor that is expected to refuse to start: its exit status and its stderr.
fn refused(args: &[&str], soft: u64, hard: u64) -> (Option<i32>, String) {
    let mut command = common::reactor_on_port_0(args);
    command.stdout(Stdio::null()).stderr(Stdio::piped());
    with_nofile(soft, hard)(&mut command);
    let mut child = command.spawn().expect("spawn reactor");
    let status = poll_for(IO_TIMEOUT, || child.try_wait().expect("try_wait"));
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("reactor {args:?} under RLIMIT_NOFILE {soft}:{hard} did not exit");
    }
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr is piped")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    (status.and_then(|status| status.code()), stderr)
}

#[test]
fn a_max_conns_the_limit_cannot_hold_is_refused_naming_the_flag_the_limit_and_what_fits() {
    let (status, stderr) = refused(&["--max-conns", "10000"], 256, 256);
    assert_eq!(status, Some(2), "a usage error; stderr:\n{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line:\n{stderr}");
    let line = stderr.trim_end();
    assert!(line.starts_with("reactor: --max-conns 10000: "), "{line}");
    assert!(line.contains("RLIMIT_NOFILE allows 256"), "{line}");
    assert!(
        line.contains("LimitNOFILE=") && line.contains("ulimit -Hn"),
        "{line}"
    );
    let largest: u64 = line
        .split_once("at most --max-conns ")
        .and_then(|(_, rest)| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no largest value in {line}"));
    assert!((200..256).contains(&largest), "{line}");

    // The largest value it names does start (and stops at once on SIGTERM).
    let largest = largest.to_string();
    let reactor = Reactor::start_with(&["--max-conns", &largest], with_nofile(256, 256));
    assert!(!reactor.log().contains("lowered"), "{}", reactor.log());
}

#[test]
fn the_default_max_conns_is_lowered_to_what_the_limit_holds_and_every_one_is_served() {
    // Every client comes from 127.0.0.1: its per-source cap must not be what stops them.
    let reactor = Reactor::start_with(
        &["--idle-timeout-ms", "0", "--max-conns-per-ip", "1000"],
        with_nofile(256, 256),
    );
    let log = reactor.log_when("the lowered --max-conns is logged", |log| {
        log.contains("--max-conns lowered")
    });
    let line = log
        .lines()
        .find(|line| line.contains("--max-conns lowered"))
        .unwrap_or_default();
    assert!(line.contains("[WARN]"), "{line}");
    let held: usize = line
        .split_once("from its default 10000 to ")
        .and_then(|(_, rest)| rest.split(':').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no figure in {line}"));
    assert!((200..256).contains(&held), "{line}");

    // It holds that many connections, every one served: no EMFILE on the way.
    let echo = reactor.addr("echo", "tcp");
    let clients: Vec<TcpStream> = (0..held)
        .map(|i| {
            let mut stream = tcp(echo);
            stream.write_all(&(i as u32).to_be_bytes()).unwrap();
            stream
        })
        .collect();
    for (i, mut stream) in clients.iter().enumerate() {
        let mut reply = [0u8; 4];
        stream.read_exact(&mut reply).unwrap();
        assert_eq!(u32::from_be_bytes(reply), i as u32);
    }
    // One more waits in the backlog and is served once another closes.
    let mut extra = tcp(echo);
    extra.write_all(b"late").unwrap();
    drop(clients);
    let mut reply = [0u8; 4];
    extra.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"late");
    assert!(
        !reactor.log().contains("pausing accepts"),
        "ran out of descriptors:\n{}",
        reactor.log()
    );
}

#[test]
fn the_soft_limit_is_raised_to_the_hard_limit_at_start() {
    let reactor = Reactor::start_with(&[], with_nofile(512, 4096));
    reactor.log_when("the raise is logged", |log| {
        log.contains("descriptors: soft limit raised 512 → 4096 (the hard limit)")
    });
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", reactor.pid()))
        .expect("read /proc/<pid>/limits");
    let open_files: Vec<&str> = limits
        .lines()
        .find_map(|line| line.strip_prefix("Max open files"))
        .map(|rest| rest.split_whitespace().collect())
        .unwrap_or_default();
    assert_eq!(open_files, ["4096", "4096", "files"], "{limits}");
    // The raised limit is the one --max-conns was checked against: the default 10000 is
    // lowered to what 4096 descriptors hold, not to what 512 would.
    let log = reactor.log_when("--max-conns is checked", |log| log.contains("serving with"));
    let lowered: u64 = log
        .split_once("--max-conns lowered from its default 10000 to ")
        .and_then(|(_, rest)| rest.split(':').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no lowered --max-conns in:\n{log}"));
    assert!((4000..4096).contains(&lowered), "{log}");
}
