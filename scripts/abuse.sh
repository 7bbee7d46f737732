#!/usr/bin/env bash
# Abuse drill: hostile clients against one release reactor for DURATION seconds, while a
# legitimate client from another address checks every second that it is still served on time.
#
#   scripts/abuse.sh [DURATION_SECONDS]      (default 30; CI runs a short one, e.g. 10)
#
# The attacks (python3, stdlib only), all at once, all from 127.0.0.0/24:
#   slowloris   250 time-stream connections from 127.0.0.10-14 dripping a greeting one byte a
#               second, never a newline; reconnecting whenever the server cuts one
#   flood       2500 silent echo connections from the single address 127.0.0.2, topped up
#               whenever the server closes some (at most 500 new ones a second)
#   never-read  5 echo connections from 127.0.0.4 writing as fast as they can, never reading
#   udp-flood   12000 UDP time-stream sessions (200 sources 127.0.0.50-249 x 60 ports, more than
#               the default 10000 session cap), then one more greeting per source each second
# The legitimate client, from 127.0.1.1 (another /24), every second: a daytime line over TCP,
# an echo round trip, a TCP time-stream session's first tick, a UDP time-stream session's first
# tick — each within 1 s of starting it.
#
# The reactor runs at its defaults except --max-conns 2000, so that one source can fill the
# whole connection table with a few thousand descriptors rather than ten thousand.
#
# Exit status: 0 if every legitimate check passed and the reactor survived, 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

duration=${1:-30}
case $duration in
    '' | *[!0-9]*) echo "usage: $0 [DURATION_SECONDS]" >&2; exit 2 ;;
esac
[ "$duration" -ge 5 ] || { echo "abuse: DURATION must be at least 5 s" >&2; exit 2; }
ramp_up=2
command -v python3 >/dev/null || { echo "abuse: python3 is needed (apt-get install -y python3)" >&2; exit 1; }

cargo build --release --quiet --bin reactor

workdir=$(mktemp -d)
reactor_pid=
pids=()
cleanup() {
    for pid in "${pids[@]}" $reactor_pid; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}" $reactor_pid; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$workdir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

target/release/reactor --time 0 --echo 0 --daytime 0 --rfc868 0 --max-conns 2000 -q \
    >"$workdir/listening" 2>"$workdir/reactor.log" &
reactor_pid=$!
for _ in $(seq 50); do
    [ "$(wc -l <"$workdir/listening")" -ge 8 ] && break
    sleep 0.1
done
[ "$(wc -l <"$workdir/listening")" -ge 8 ] || {
    echo "abuse: reactor did not start" >&2
    cat "$workdir/reactor.log" >&2
    exit 1
}

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$reactor_pid/status" 2>/dev/null || echo '?'; }
fds() { { find "/proc/$reactor_pid/fd" -mindepth 1 -maxdepth 1 2>/dev/null || true; } | wc -l; }
alive() { kill -0 "$reactor_pid" 2>/dev/null && [ -d "/proc/$reactor_pid" ]; }
# Kernel memory of the reactor's TCP sockets (skmem r+w+t, as `ss -m` reports it).
tcp_ports=$(awk '$3 == "tcp" {sub(/.*:/, "", $4); print $4}' "$workdir/listening")
socket_memory() {
    command -v ss >/dev/null || { echo "n/a (ss missing: apt-get install -y iproute2)"; return; }
    local filter="" port
    for port in $tcp_ports; do
        filter="${filter:+$filter or }sport = :$port"
    done
    { ss -tmnH "( $filter )" | grep -o 'skmem:([^)]*)' || true; } | awk -F'[(,)]' '
        { for (i = 2; i <= NF; i++) if ($i ~ /^[rwt][0-9]/) sum += substr($i, 2); n++ }
        END { printf "%d KiB in %d sockets\n", sum / 1024, n }'
}
rss_start=$(rss_kib)
fds_start=$(fds)
mem_start=$(socket_memory)

cat >"$workdir/attack.py" <<'PY'
"""One attack, until its deadline; prints one line of statistics at the end."""
import selectors, socket, sys, time

mode, listening, duration = sys.argv[1], sys.argv[2], float(sys.argv[3])
ports = {}
for line in open(listening):
    _, service, proto, addr = line.split()
    ports[(service, proto)] = int(addr.rsplit(":", 1)[1])
SERVER = "127.0.0.1"
deadline = time.monotonic() + duration
stats = {}


def count(key, n=1):
    stats[key] = stats.get(key, 0) + n


def tcp_from(source, service):
    s = socket.socket()
    s.bind((source, 0))
    s.settimeout(0.5)
    try:
        s.connect((SERVER, ports[(service, "tcp")]))
    except OSError:
        s.close()
        count("connect_failed")
        return None
    s.setblocking(False)
    count("opened")
    return s


def slowloris():
    sources = ["127.0.0.%d" % i for i in range(10, 15)]
    sel = selectors.DefaultSelector()

    def open_one(source):
        s = tcp_from(source, "time")
        if s:
            sel.register(s, selectors.EVENT_READ, source)

    for source in sources:
        for _ in range(50):
            open_one(source)
    next_drip = time.monotonic()
    while time.monotonic() < deadline:
        timeout = max(0.0, min(next_drip, deadline) - time.monotonic())
        for key, _ in sel.select(timeout):
            try:
                data = key.fileobj.recv(4096)
            except OSError:
                data = b""
            count("error_line" if b"greeting timeout" in data else "cut_silently")
            sel.unregister(key.fileobj)
            key.fileobj.close()
            open_one(key.data)
        if time.monotonic() >= next_drip:
            for key in list(sel.get_map().values()):
                try:
                    key.fileobj.send(b"B")  # never a newline
                except OSError:
                    pass  # shows up as readable (EOF or error) above
            next_drip += 1.0
    stats["held_at_end"] = len(sel.get_map())


def flood():
    sel = selectors.DefaultSelector()
    target = 2500
    while time.monotonic() < deadline:
        budget = 50  # new connections per 100 ms
        while len(sel.get_map()) < target and budget > 0 and time.monotonic() < deadline:
            budget -= 1
            s = tcp_from("127.0.0.2", "echo")
            if s:
                sel.register(s, selectors.EVENT_READ)
        for key, _ in sel.select(0.1):
            try:
                data = key.fileobj.recv(4096)
            except OSError:
                data = b""
            if data:
                count("unexpected_data")
                continue
            count("closed_by_server")
            sel.unregister(key.fileobj)
            key.fileobj.close()
        stats["held_max"] = max(stats.get("held_max", 0), len(sel.get_map()))
    stats["held_at_end"] = len(sel.get_map())


def never_read():
    sel = selectors.DefaultSelector()
    chunk = b"x" * 65536

    def open_one():
        s = tcp_from("127.0.0.4", "echo")
        if s:
            sel.register(s, selectors.EVENT_WRITE)

    for _ in range(5):
        open_one()
    while time.monotonic() < deadline:
        for key, _ in sel.select(0.2):
            try:
                while True:
                    count("bytes_written", key.fileobj.send(chunk))
            except BlockingIOError:
                pass
            except OSError:
                count("closed_by_server")
                sel.unregister(key.fileobj)
                key.fileobj.close()
                open_one()
    stats["held_at_end"] = len(sel.get_map())


def udp_flood():
    sources = ["127.0.0.%d" % i for i in range(50, 250)]
    target = (SERVER, ports[("time", "udp")])

    def greet(source):
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind((source, 0))
        u.sendto(b"Bonjour", target)
        u.close()  # the session lives on in the server, ticking to a closed port
        count("greetings")

    for _ in range(60):  # 12000 sessions, paced so the server's socket buffer keeps up
        if time.monotonic() >= deadline:
            break
        for source in sources:
            greet(source)
        time.sleep(0.02)
    while time.monotonic() < deadline:
        for source in sources:
            greet(source)
        time.sleep(max(0.0, min(1.0, deadline - time.monotonic())))


{"slowloris": slowloris, "flood": flood, "never-read": never_read, "udp-flood": udp_flood}[mode]()
print("%-10s %s" % (mode, " ".join("%s=%d" % kv for kv in sorted(stats.items()))))
PY

cat >"$workdir/legit.py" <<'PY'
"""The legitimate client: every second, four checks, each to be done within 1 s."""
import socket, sys, threading, time

listening, duration, t0 = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
ports = {}
for line in open(listening):
    _, service, proto, addr = line.split()
    ports[(service, proto)] = ("127.0.0.1", int(addr.rsplit(":", 1)[1]))
SOURCE, LIMIT = "127.0.1.1", 1.0


class Late(Exception):
    pass


def left(start):
    remaining = start + LIMIT - time.monotonic()
    if remaining <= 0:
        raise Late("no answer within %.1f s" % LIMIT)
    return remaining


def connect(service, start):
    s = socket.socket()
    s.bind((SOURCE, 0))
    s.settimeout(left(start))
    s.connect(ports[(service, "tcp")])
    return s


def recv_until(s, start, done):
    data = b""
    while not done(data):
        s.settimeout(left(start))
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def daytime(start):
    with connect("daytime", start) as s:
        data = recv_until(s, start, lambda d: False)  # until EOF
    assert data.endswith(b"\r\n") and len(data) > 20, "bad daytime reply %r" % data


def echo(start):
    with connect("echo", start) as s:
        s.sendall(b"legit ping\n")
        data = recv_until(s, start, lambda d: len(d) >= 11)
    assert data == b"legit ping\n", "bad echo %r" % data


def time_tcp(start):
    with connect("time", start) as s:
        s.sendall(b"Bonjour\n")
        data = recv_until(s, start, lambda d: b"\n" in d)
    assert data.count(b"-") == 2 and data.endswith(b"\n"), "bad first tick %r" % data


def time_udp(start):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.bind((SOURCE, 0))
        u.sendto(b"Bonjour", ports[("time", "udp")])
        u.settimeout(left(start))
        data = u.recv(2048)
    assert data.count(b"-") == 2, "bad first tick %r" % data


checks = [("daytime", daytime), ("echo", echo), ("time-tcp", time_tcp), ("time-udp", time_udp)]
ok = {name: 0 for name, _ in checks}
failed = {name: 0 for name, _ in checks}
lock = threading.Lock()


def run(name, check):
    start = time.monotonic()
    try:
        check(start)
        took = time.monotonic() - start
        if took > LIMIT:
            raise Late("took %.2f s" % took)
        with lock:
            ok[name] += 1
    except (OSError, AssertionError, Late) as e:
        with lock:
            failed[name] += 1
            print("  t=%5.1fs legit %-8s FAILED: %s" % (time.time() - t0, name, e or type(e).__name__),
                  flush=True)


end = time.monotonic() + duration
next_round = time.monotonic()
while time.monotonic() < end:
    # The four checks at once, so each one runs every second even while the others hang.
    threads = [threading.Thread(target=run, args=check) for check in checks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    next_round += 1.0  # the legitimate client's own pace: one round a second
    time.sleep(max(0.0, next_round - time.monotonic()))
print("legit ok=%d failed=%d   %s" % (
    sum(ok.values()), sum(failed.values()),
    "  ".join("%s %d/%d" % (n, ok[n], ok[n] + failed[n]) for n, _ in checks)))
PY

t0=$(date +%s.%N)
echo "abuse: reactor pid $reactor_pid (release; defaults but --max-conns 2000), ${duration} s of attacks"
attacks=(slowloris flood never-read udp-flood)
for attack in "${attacks[@]}"; do
    timeout $((duration + 20)) python3 "$workdir/attack.py" "$attack" "$workdir/listening" "$duration" \
        >"$workdir/$attack.out" 2>&1 &
    pids+=($!)
done
sleep "$ramp_up" # the attacks ramp up before the legitimate client starts checking
# The legitimate client stops a good second before the attacks end (a round takes up to 1 s), so
# the end figures are taken with every attack still running.
timeout $((duration + 20)) python3 "$workdir/legit.py" "$workdir/listening" $((duration - ramp_up - 2)) "$t0" \
    >"$workdir/legit.out" 2>&1 &
legit_pid=$!
pids+=("$legit_pid")

died_at=
while kill -0 "$legit_pid" 2>/dev/null; do
    if [ -z "$died_at" ] && ! alive; then
        died_at=$(awk -v now="$(date +%s.%N)" -v t0="$t0" 'BEGIN {printf "%.1f", now - t0}')
        echo "  t=${died_at}s the reactor DIED"
    fi
    sleep 1 # a liveness poll; the checks themselves wait on bytes
done
wait "$legit_pid" || true

if alive; then
    rss_end=$(rss_kib)
    fds_end=$(fds)
    mem_end=$(socket_memory)
else
    rss_end='(dead)' fds_end='(dead)' mem_end='(dead)'
    [ -n "$died_at" ] || died_at='the end'
fi
for pid in "${pids[@]}"; do
    wait "$pid" 2>/dev/null || true
done

cat "$workdir/legit.out"
echo
echo "attacks run (${duration} s each, at once):"
for attack in "${attacks[@]}"; do
    echo "  $(tail -n 1 "$workdir/$attack.out" 2>/dev/null || echo "$attack: no output")"
done
legit_summary=$(grep '^legit ok=' "$workdir/legit.out" || echo "legit ok=0 failed=0 (no summary)")
echo "legitimate checks: ${legit_summary#legit }"
echo "reactor (start -> end of the attacks): RSS ${rss_start} kB -> ${rss_end} kB, fds ${fds_start} -> ${fds_end}"
echo "reactor TCP socket memory (ss skmem r+w+t): ${mem_start} -> ${mem_end}"
if [ -n "$died_at" ]; then
    echo "reactor: DIED (at ${died_at}); its stderr ends with:"
    tail -n 5 "$workdir/reactor.log" | sed 's/^/  /'
else
    echo "reactor: alive"
fi

failed=$(sed -n 's/^legit ok=[0-9]* failed=\([0-9]*\).*/\1/p' "$workdir/legit.out")
passed=$(sed -n 's/^legit ok=\([0-9]*\).*/\1/p' "$workdir/legit.out")
if [ -n "$died_at" ] || [ "${failed:-1}" != 0 ] || [ "${passed:-0}" = 0 ]; then
    echo "abuse: FAILED"
    exit 1
fi
echo "abuse: ok"
