#!/usr/bin/env bash
# Soak test: a mixed load against the release reactor for DURATION seconds, printing the
# reactor's RSS and open descriptors every few seconds. Fails if either keeps growing: RSS
# must level off under steady load, and descriptors must come back to the idle count once the
# load stops.
#
#   scripts/soak.sh [DURATION_SECONDS]      (default 60; CI runs 20)
#
# The load (python3, stdlib only): TCP and UDP time streams, TCP echo ping-pong, daytime and
# RFC 868 over TCP and UDP, plus abuse: connections that reset mid-stream and connections that
# connect and say nothing (closed by the idle timeout).
set -euo pipefail
cd "$(dirname "$0")/.."

duration=${1:-60}
sample_every=2
command -v python3 >/dev/null || { echo "soak: python3 is needed (apt-get install -y python3)" >&2; exit 1; }

cargo build --release --quiet --bin reactor
workdir=$(mktemp -d)
reactor_pid=
cleanup() {
    [ -n "$reactor_pid" ] && kill "$reactor_pid" 2>/dev/null && wait "$reactor_pid" 2>/dev/null
    rm -rf "$workdir"
}
trap cleanup EXIT

target/release/reactor --time 0 --echo 0 --daytime 0 --rfc868 0 --ticks 3 --interval-ms 100 \
    --idle-timeout-ms 1000 --udp-rate-per-ip 0 --max-udp-sessions-per-ip 10000 -q \
    >"$workdir/listening" 2>"$workdir/reactor.log" &
reactor_pid=$!
for _ in $(seq 50); do
    [ "$(wc -l <"$workdir/listening")" -ge 8 ] && break
    sleep 0.1
done
[ "$(wc -l <"$workdir/listening")" -ge 8 ] || { echo "soak: reactor did not start" >&2; cat "$workdir/reactor.log" >&2; exit 1; }

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$reactor_pid/status"; }
fds() { find "/proc/$reactor_pid/fd" -mindepth 1 -maxdepth 1 | wc -l; }
idle_fds=$(fds)

cat >"$workdir/load.py" <<'PY'
import random, socket, struct, sys, threading, time

ports = {}
for line in open(sys.argv[1]):
    _, service, proto, addr = line.split()
    ports[(service, proto)] = ("127.0.0.1", int(addr.rsplit(":", 1)[1]))
deadline = time.time() + float(sys.argv[2])
counts = {"ok": 0, "tcp_fail": 0, "udp_lost": 0}
lock = threading.Lock()

def count(key):
    with lock:
        counts[key] += 1

def tcp(service):
    s = socket.create_connection(ports[(service, "tcp")], timeout=5)
    return s

def read_all(s):
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return data
        data += chunk

def time_tcp():
    s = tcp("time"); s.sendall(b"Bonjour\n")
    lines = read_all(s).decode().splitlines(); s.close()
    assert len(lines) == 4 and lines[3] == "Au Revoir", lines

def time_udp():
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(2)
    u.sendto(b"Bonjour", ports[("time", "udp")])
    try:
        got = [u.recv(100) for _ in range(4)]
        assert got[3] == b"Au Revoir", got
    except socket.timeout:
        count("udp_lost")
    finally:
        u.close()

def echo_pingpong():
    s = tcp("echo")
    for _ in range(50):
        msg = random.randbytes(64); s.sendall(msg)
        got = b""
        while len(got) < 64:
            chunk = s.recv(64 - len(got)); assert chunk; got += chunk
        assert got == msg
    s.close()

def oneshot():
    for service in ("daytime", "rfc868"):
        s = tcp(service); data = read_all(s); s.close()
        assert data.endswith(b"\r\n") if service == "daytime" else len(data) == 4
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(2)
        u.sendto(b"", ports[(service, "udp")])
        try:
            u.recv(100)
        except socket.timeout:
            count("udp_lost")
        u.close()

def reset_midstream():
    s = tcp("echo"); s.sendall(random.randbytes(200_000))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)); s.close()

def silent():
    s = tcp("echo")  # says nothing: the server must close it after its 1 s idle timeout
    assert s.recv(1) == b"", "an idle connection was not closed"
    s.close()

def worker(job):
    while time.time() < deadline:
        try:
            job(); count("ok")
        except (AssertionError, OSError) as e:
            count("tcp_fail"); print(f"soak load: {job.__name__}: {e!r}", file=sys.stderr)

jobs = [time_tcp] * 8 + [time_udp] * 4 + [echo_pingpong] * 4 + [oneshot] * 2 + [reset_midstream, silent]
threads = [threading.Thread(target=worker, args=(job,)) for job in jobs]
for t in threads: t.start()
for t in threads: t.join()
print(f"load: {counts['ok']} exchanges ok, {counts['tcp_fail']} failed, {counts['udp_lost']} UDP replies lost")
sys.exit(1 if counts["tcp_fail"] else 0)
PY

echo "soak: ${duration}s of mixed load against pid $reactor_pid (idle: $(rss_kib) KiB RSS, $idle_fds fds)"
python3 "$workdir/load.py" "$workdir/listening" "$duration" &
load_pid=$!
printf '%8s %10s %6s\n' "t(s)" "RSS(KiB)" "fds"
rss_samples=()
start=$(date +%s)
while kill -0 "$load_pid" 2>/dev/null; do
    sleep "$sample_every"
    kill -0 "$reactor_pid" 2>/dev/null || { echo "soak: the reactor died" >&2; cat "$workdir/reactor.log" >&2; exit 1; }
    rss=$(rss_kib)
    rss_samples+=("$rss")
    printf '%8s %10s %6s\n' "$(($(date +%s) - start))" "$rss" "$(fds)"
done
load_status=0
wait "$load_pid" || load_status=$?

# Descriptors: back to the idle count once the load is gone (idle timeout 1 s, linger 2 s).
for _ in $(seq 50); do
    [ "$(fds)" -le "$idle_fds" ] && break
    sleep 0.1
done
final_fds=$(fds)

# RSS: the peak of the last third of the run may not exceed the peak of the first third (after
# warm-up) by more than 20 % + 1 MiB — steady load, steady memory.
n=${#rss_samples[@]}
third=$(( n / 3 > 0 ? n / 3 : 1 ))
first_peak=$(printf '%s\n' "${rss_samples[@]:0:$third}" | sort -n | tail -1)
last_peak=$(printf '%s\n' "${rss_samples[@]:$((n - third))}" | sort -n | tail -1)
allowed=$(( first_peak * 12 / 10 + 1024 ))
echo "soak: RSS peak first third ${first_peak} KiB, last third ${last_peak} KiB (allowed ${allowed}); fds idle ${idle_fds}, after ${final_fds}"

status=0
if [ "$load_status" -ne 0 ]; then echo "soak: FAIL: the load saw failures" >&2; status=1; fi
if [ "$last_peak" -gt "$allowed" ]; then echo "soak: FAIL: RSS keeps growing" >&2; status=1; fi
if [ "$final_fds" -gt "$idle_fds" ]; then echo "soak: FAIL: descriptors leaked ($idle_fds -> $final_fds)" >&2; status=1; fi
if grep -q panicked "$workdir/reactor.log"; then echo "soak: FAIL: the reactor panicked" >&2; status=1; fi
[ "$status" -eq 0 ] && echo "soak: OK"
exit "$status"
