//! `tokio-echo`: an echo server (RFC 862) on tokio's current-thread runtime, written the way
//! tokio's own examples write it. TCP: one task per connection, `read` then `write_all`.
//! UDP (`--udp`): one `UdpSocket` and one task, `recv_from` then `send_to`, in a loop.
//! The baseline the reactor's echo is compared with: one thread each, same work.
//!
//! ```text
//! tokio-echo [--bind IP] [--echo PORT] [--udp]    (defaults 127.0.0.1, 0 = OS's choice, TCP)
//! ```
//! Prints `listening echo tcp IP:PORT` (or `udp`) on stdout, then serves until killed.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

/// Read buffer per connection (and of the UDP socket): the same 64 KiB the reactor reads into,
/// which also holds the largest datagram.
const BUF: usize = 64 * 1024;

fn main() -> ExitCode {
    let mut args = pico_args::Arguments::from_env();
    let bind: IpAddr = match args.opt_value_from_str("--bind") {
        Ok(ip) => ip.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        Err(e) => return usage(&e.to_string()),
    };
    let port: u16 = match args.opt_value_from_str("--echo") {
        Ok(port) => port.unwrap_or(0),
        Err(e) => return usage(&e.to_string()),
    };
    let udp = args.contains("--udp");
    if let Some(extra) = args.finish().first() {
        return usage(&format!("unexpected argument {extra:?}"));
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("tokio-echo: runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let addr = SocketAddr::new(bind, port);
    let served = if udp {
        runtime.block_on(serve_udp(addr))
    } else {
        runtime.block_on(serve_tcp(addr))
    };
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tokio-echo: {e}");
            ExitCode::from(1)
        }
    }
}

fn usage(problem: &str) -> ExitCode {
    eprintln!("tokio-echo: {problem}\nusage: tokio-echo [--bind IP] [--echo PORT] [--udp]");
    ExitCode::from(2)
}

async fn serve_tcp(addr: SocketAddr) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "listening echo tcp {}", listener.local_addr()?)?;
    stdout.flush()?;
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(echo(stream));
            }
            // EMFILE and friends: back off instead of spinning.
            Err(e) => {
                eprintln!("tokio-echo: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn echo(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true); // as the reactor does: replies go out at once
    let mut buf = vec![0u8; BUF];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if stream.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Echoes each datagram to its sender. `send_to` waits for the socket to be writable if its
/// buffer is full (tokio's way), so no reply is dropped here; a failed one is skipped.
async fn serve_udp(addr: SocketAddr) -> std::io::Result<()> {
    let socket = UdpSocket::bind(addr).await?;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "listening echo udp {}", socket.local_addr()?)?;
    stdout.flush()?;
    let mut buf = vec![0u8; BUF];
    loop {
        match socket.recv_from(&mut buf).await {
            Ok((n, peer)) => {
                let _ = socket.send_to(&buf[..n], peer).await;
            }
            // A pending ICMP error (e.g. port unreachable) is reported once: go on.
            Err(_) => continue,
        }
    }
}
