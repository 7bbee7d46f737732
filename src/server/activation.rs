//! systemd socket activation: serve the sockets a supervisor passed instead of binding.
//!
//! A supervisor (systemd, or `systemd-socket-activate` by hand) binds the sockets itself —
//! on the real ports, as root — and starts the server with them already open as descriptors
//! 3, 4, …, described by three environment variables (`sd_listen_fds(3)`):
//!
//! - `LISTEN_PID`: the process they are for (a child that inherits the variables must not
//!   take them, so they are ignored unless this is our pid);
//! - `LISTEN_FDS`: how many descriptors, starting at 3;
//! - `LISTEN_FDNAMES`: their names, `:`-separated (`FileDescriptorName=` in the `.socket`
//!   unit, `--fdname` for `systemd-socket-activate`).
//!
//! Each descriptor is checked before it is used (`fstat`: a socket; `getsockopt(SO_TYPE)`:
//! stream or datagram; `getsockname`: IPv4 or IPv6; `SO_ACCEPTCONN`: a stream socket must be
//! listening), made non-blocking and close-on-exec, and matched to a service: by name when it
//! has one (`time`, `echo`, `daytime`, `rfc868`), otherwise by its port against the ports on
//! the command line. With passed sockets the server binds nothing itself — every service is
//! served on exactly the sockets it was given, so nothing is ever bound twice. The variables
//! are removed from the environment once read, so no child inherits them.
//!
//! Readiness (`sd_notify(3)`): when started with `NOTIFY_SOCKET` (a unit with `Type=notify`),
//! the server sends `READY=1` to that Unix datagram socket once every socket is bound and the
//! `listening` lines are out, so the supervisor knows the service is up — not merely started.

use std::net::SocketAddr;
use std::os::fd::{FromRawFd, RawFd};

use socket2::{Socket, Type};

use super::listen::Proto;
use crate::services::ServiceKind;

/// The first passed descriptor (0, 1, 2 are stdin, stdout, stderr).
const FIRST_FD: RawFd = 3;
/// More than any unit passes; a larger `LISTEN_FDS` is refused as garbage.
const MAX_FDS: usize = 64;

/// A socket handed over by the supervisor, checked and matched to its service.
pub struct PassedSocket {
    pub kind: ServiceKind,
    pub proto: Proto,
    pub addr: SocketAddr,
    pub socket: Socket,
}

/// The activation variables as read from the environment.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Listen {
    pub pid: Option<String>,
    pub fds: Option<String>,
    pub names: Option<String>,
    /// `NOTIFY_SOCKET`: where to say `READY=1` (a path, or `@name` in the abstract namespace).
    pub notify: Option<String>,
}

impl Listen {
    /// Reads the variables and removes them from the environment.
    ///
    /// Must be called while the process has a single thread: changing the environment is
    /// only sound then (hence `unsafe` since Rust 2024).
    pub fn take_from_env() -> Self {
        let read = |name: &str| std::env::var(name).ok();
        let listen = Listen {
            pid: read("LISTEN_PID"),
            fds: read("LISTEN_FDS"),
            names: read("LISTEN_FDNAMES"),
            notify: read("NOTIFY_SOCKET"),
        };
        for name in [
            "LISTEN_PID",
            "LISTEN_FDS",
            "LISTEN_FDNAMES",
            "NOTIFY_SOCKET",
        ] {
            // SAFETY: called at the top of `main`, before any other thread exists, so no
            // other thread can be reading the environment.
            unsafe { std::env::remove_var(name) };
        }
        listen
    }

    /// The passed descriptors and their names, if the variables are for this process.
    pub fn descriptors(&self, own_pid: u32) -> Result<Vec<(RawFd, Option<String>)>, String> {
        let (Some(pid), Some(fds)) = (&self.pid, &self.fds) else {
            return Ok(Vec::new());
        };
        if pid.trim().parse::<u32>().ok() != Some(own_pid) {
            return Ok(Vec::new()); // meant for another process (we inherited them)
        }
        let count: usize = fds
            .trim()
            .parse()
            .ok()
            .filter(|&n| n <= MAX_FDS)
            .ok_or_else(|| {
                format!("LISTEN_FDS={fds:?}: not a number of sockets (0 to {MAX_FDS})")
            })?;
        let mut names = self.names.as_deref().unwrap_or("").split(':');
        Ok((0..count)
            .map(|i| {
                let name = names
                    .next()
                    .filter(|name| !name.is_empty() && *name != "unknown")
                    .map(str::to_owned);
                (FIRST_FD + i as RawFd, name)
            })
            .collect())
    }
}

/// Tells the supervisor the server is ready (`READY=1` on `NOTIFY_SOCKET`), if it asked.
/// One datagram on a Unix socket; a failure is the supervisor's problem, not a reason to stop
/// serving, so it is returned for a log line.
pub fn notify_ready(listen: &Listen) -> Result<bool, String> {
    let Some(target) = listen.notify.as_deref() else {
        return Ok(false);
    };
    let message = b"READY=1\nSTATUS=serving\n";
    let socket =
        std::os::unix::net::UnixDatagram::unbound().map_err(|e| format!("NOTIFY_SOCKET: {e}"))?;
    let sent = match target.strip_prefix('@') {
        #[cfg(target_os = "linux")]
        Some(abstract_name) => {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(abstract_name.as_bytes())
                .and_then(|addr| socket.send_to_addr(message, &addr))
        }
        #[cfg(not(target_os = "linux"))]
        Some(_) => Err(std::io::ErrorKind::Unsupported.into()),
        None => socket.send_to(message, target),
    };
    sent.map(|_| true)
        .map_err(|e| format!("NOTIFY_SOCKET={target:?}: {e}"))
}

/// Takes over every passed descriptor and matches it to a service: by name, or else by port
/// among `services` (the command line's ports). Any descriptor that cannot be served is an
/// error naming it, so a wrong unit file fails at start, not at the first client.
pub fn adopt(
    descriptors: Vec<(RawFd, Option<String>)>,
    services: &[(ServiceKind, u16)],
) -> Result<Vec<PassedSocket>, String> {
    descriptors
        .into_iter()
        .map(|(fd, name)| {
            let socket = take_socket(fd)?;
            let (proto, addr) = describe(fd, &socket)?;
            let kind = match &name {
                Some(name) => ServiceKind::ALL
                    .into_iter()
                    .find(|kind| kind.name() == name)
                    .ok_or_else(|| {
                        format!(
                            "passed socket fd {fd} ({} {addr}) is named {name:?}, which is no service (time, echo, daytime, rfc868)",
                            proto.name()
                        )
                    })?,
                None => services
                    .iter()
                    .find(|&&(_, port)| port != 0 && port == addr.port())
                    .map(|&(kind, _)| kind)
                    .ok_or_else(|| {
                        format!(
                            "passed socket fd {fd} ({} {addr}) has no name and its port is no service's; name it (FileDescriptorName=, --fdname) or give a service that port",
                            proto.name()
                        )
                    })?,
            };
            socket
                .set_nonblocking(true)
                .and_then(|()| socket.set_cloexec(true))
                .map_err(|e| format!("passed socket fd {fd}: {e}"))?;
            Ok(PassedSocket {
                kind,
                proto,
                addr,
                socket,
            })
        })
        .collect()
}

/// Owns `fd` as a socket, after checking that it is an open socket.
fn take_socket(fd: RawFd) -> Result<Socket, String> {
    // SAFETY: `fstat` only writes into the zeroed struct we pass; an invalid fd is an error.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd, &mut stat) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(format!("passed descriptor fd {fd}: {e}"));
    }
    if stat.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return Err(format!("passed descriptor fd {fd} is not a socket"));
    }
    // SAFETY: fd is open and a socket (checked above), and the supervisor handed it to this
    // process alone; nothing else in the process owns it, so the `Socket` may close it.
    Ok(unsafe { Socket::from_raw_fd(fd) })
}

/// TCP listener or UDP socket, and its address; anything else is refused with a reason.
fn describe(fd: RawFd, socket: &Socket) -> Result<(Proto, SocketAddr), String> {
    let error = |what: String| format!("passed socket fd {fd}: {what}");
    let addr = socket
        .local_addr()
        .map_err(|e| error(e.to_string()))?
        .as_socket()
        .ok_or_else(|| error("not an IPv4 or IPv6 socket (a Unix socket?)".into()))?;
    let kind = socket.r#type().map_err(|e| error(e.to_string()))?;
    if kind == Type::STREAM {
        let listening = socket.is_listener().map_err(|e| error(e.to_string()))?;
        if !listening {
            return Err(error(format!(
                "a TCP socket on {addr} that is not listening"
            )));
        }
        Ok((Proto::Tcp, addr))
    } else if kind == Type::DGRAM {
        Ok((Proto::Udp, addr))
    } else {
        Err(error(format!(
            "{addr} is neither a stream (TCP) nor a datagram (UDP) socket"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listen(pid: &str, fds: &str, names: Option<&str>) -> Listen {
        Listen {
            pid: Some(pid.into()),
            fds: Some(fds.into()),
            names: names.map(Into::into),
            notify: None,
        }
    }

    #[test]
    fn variables_for_another_process_or_absent_mean_nothing_was_passed() {
        assert_eq!(Listen::default().descriptors(42), Ok(Vec::new()));
        assert_eq!(listen("41", "2", None).descriptors(42), Ok(Vec::new()));
        assert_eq!(listen("garbage", "2", None).descriptors(42), Ok(Vec::new()));
    }

    #[test]
    fn descriptors_start_at_3_with_their_names_and_unknown_means_unnamed() {
        let passed = listen("42", "3", Some("echo:unknown"))
            .descriptors(42)
            .unwrap();
        assert_eq!(
            passed,
            vec![(3, Some("echo".into())), (4, None), (5, None)],
            "a missing or 'unknown' name is no name"
        );
    }

    #[test]
    fn a_garbage_count_is_refused() {
        assert!(listen("42", "lots", None).descriptors(42).is_err());
        assert!(listen("42", "100000", None).descriptors(42).is_err());
        assert!(listen("42", "-1", None).descriptors(42).is_err());
    }

    #[test]
    fn an_fd_that_is_not_a_socket_is_refused_by_name() {
        let file = std::fs::File::open("/dev/null").unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
        let err = adopt(vec![(fd, None)], &[]).err().unwrap();
        assert!(err.contains(&format!("fd {fd} is not a socket")), "{err}");
    }
}
