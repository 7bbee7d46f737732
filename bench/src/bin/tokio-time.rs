//! `tokio-time`: the time stream (PROTOCOLS.md §2) on tokio's current-thread runtime, written
//! the obvious way: a task per TCP connection that reads its greeting line and then loops on a
//! `tokio::time::interval`; for UDP, one socket and a task per peer session. The baseline for
//! the reactor's per-session memory and tick lateness at 10,000s of sessions.
//!
//! ```text
//! tokio-time [--bind IP] [--time PORT] [--ticks N] [--interval-ms MS]
//!            (defaults 127.0.0.1, 0 = OS's choice, 60, 1000)
//! ```
//! Prints `listening time tcp IP:PORT` and `listening time udp IP:PORT` (same port), then
//! serves until killed. No caps on sessions: the obvious way has none.

use std::collections::HashSet;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::time::{Instant, interval_at};

/// Longest greeting line read, as in the reactor.
const GREETING_MAX: u64 = 1024;

#[derive(Clone, Copy)]
struct Settings {
    ticks: u32,
    interval: Duration,
}

fn main() -> ExitCode {
    let mut args = pico_args::Arguments::from_env();
    let parsed = (|| -> Result<(IpAddr, u16, Settings), pico_args::Error> {
        let bind = args
            .opt_value_from_str("--bind")?
            .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let port = args.opt_value_from_str("--time")?.unwrap_or(0);
        let ticks = args.opt_value_from_str("--ticks")?.unwrap_or(60);
        let ms: u64 = args.opt_value_from_str("--interval-ms")?.unwrap_or(1000);
        Ok((
            bind,
            port,
            Settings {
                ticks,
                interval: Duration::from_millis(ms.max(1)),
            },
        ))
    })();
    let (bind, port, settings) = match parsed {
        Ok(parsed) => parsed,
        Err(e) => return usage(&e.to_string()),
    };
    if let Some(extra) = args.finish().first() {
        return usage(&format!("unexpected argument {extra:?}"));
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("tokio-time: runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(serve(bind, port, settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tokio-time: {e}");
            ExitCode::from(1)
        }
    }
}

fn usage(problem: &str) -> ExitCode {
    eprintln!(
        "tokio-time: {problem}\nusage: tokio-time [--bind IP] [--time PORT] [--ticks N] [--interval-ms MS]"
    );
    ExitCode::from(2)
}

/// The current local time as a tick, formatted afresh each time (the obvious way).
fn now_text() -> String {
    chrono::Local::now().format("%Y-%m-%d %H:%M:%S").to_string()
}

async fn serve(ip: IpAddr, port: u16, settings: Settings) -> std::io::Result<()> {
    let (listener, udp) = bind_pair(ip, port).await?;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "listening time tcp {}", listener.local_addr()?)?;
    writeln!(stdout, "listening time udp {}", udp.local_addr()?)?;
    stdout.flush()?;
    tokio::spawn(serve_udp(Arc::new(udp), settings));
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(tcp_session(stream, settings));
            }
            // EMFILE and friends: back off instead of spinning.
            Err(e) => {
                eprintln!("tokio-time: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// TCP and UDP on the same port number; for port 0, tries until one is free for both.
async fn bind_pair(ip: IpAddr, port: u16) -> std::io::Result<(TcpListener, UdpSocket)> {
    let mut attempts = 0;
    loop {
        attempts += 1;
        let listener = TcpListener::bind(SocketAddr::new(ip, port)).await?;
        let chosen = listener.local_addr()?.port();
        match UdpSocket::bind(SocketAddr::new(ip, chosen)).await {
            Ok(udp) => return Ok((listener, udp)),
            Err(e) if port == 0 && attempts < 20 => drop(e),
            Err(e) => return Err(e),
        }
    }
}

async fn tcp_session(stream: TcpStream, settings: Settings) {
    let _ = stream.set_nodelay(true);
    let mut stream = BufReader::new(stream);
    let mut greeting = String::new();
    match (&mut stream)
        .take(GREETING_MAX + 1)
        .read_line(&mut greeting)
        .await
    {
        Ok(_) if greeting.ends_with('\n') => {}
        Ok(_) if greeting.len() as u64 > GREETING_MAX => {
            let _ = stream.write_all(b"error: line too long\n").await;
            return;
        }
        _ => return, // closed before a whole greeting, or not UTF-8
    }
    let mut ticker = interval_at(Instant::now(), settings.interval);
    for _ in 0..settings.ticks {
        ticker.tick().await;
        let line = format!("{}\n", now_text());
        if stream.write_all(line.as_bytes()).await.is_err() {
            return;
        }
    }
    let _ = stream.write_all(b"Au Revoir\n").await;
    let _ = stream.shutdown().await;
}

async fn serve_udp(socket: Arc<UdpSocket>, settings: Settings) {
    let live = Arc::new(Mutex::new(HashSet::new()));
    let mut buf = vec![0u8; 2048];
    loop {
        let peer = match socket.recv_from(&mut buf).await {
            Ok((_, peer)) => peer,
            Err(_) => continue, // e.g. an ICMP error reported on the socket
        };
        let is_new = live.lock().map(|mut set| set.insert(peer)).unwrap_or(false);
        if is_new {
            tokio::spawn(udp_session(
                Arc::clone(&socket),
                peer,
                Arc::clone(&live),
                settings,
            ));
        }
    }
}

async fn udp_session(
    socket: Arc<UdpSocket>,
    peer: SocketAddr,
    live: Arc<Mutex<HashSet<SocketAddr>>>,
    settings: Settings,
) {
    let mut ticker = interval_at(Instant::now(), settings.interval);
    for _ in 0..settings.ticks {
        ticker.tick().await;
        let _ = socket.send_to(now_text().as_bytes(), peer).await;
    }
    let _ = socket.send_to(b"Au Revoir", peer).await;
    if let Ok(mut set) = live.lock() {
        set.remove(&peer);
    }
}
