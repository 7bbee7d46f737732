#!/usr/bin/env bash
# A scripted tour of the project: the reactor on free ports, each client against it, real
# third-party tools where installed, the HTTP client against python's http.server, a look at
# what the loop saw (--trace-events=json: one session's lines in words, and the whole run drawn
# as a timeline page, target/demo/timeline.html), and a graceful stop.
#
#   scripts/demo.sh            the tour, with sessions slow enough to watch
#   scripts/demo.sh --quick    the same in a few seconds (CI runs this; it must exit 0)
set -euo pipefail
cd "$(dirname "$0")/.."

ticks=3 interval_ms=500
if [ "${1:-}" = "--quick" ]; then
    ticks=2 interval_ms=100
elif [ $# -gt 0 ]; then
    echo "usage: scripts/demo.sh [--quick]" >&2
    exit 2
fi

step() { printf '\n== %s\n' "$*" >&2; }
# Prints a command (on stderr, so it stays out of pipes), then runs it; a failing client fails
# the demo.
show() { printf '$ %s\n' "$*" >&2; "$@"; }
have() { command -v "$1" >/dev/null || [ -x "/usr/sbin/$1" ]; }

step "Build (release)"
show cargo build --release --quiet --bins
bin=target/release

work=$(mktemp -d)
reactor_pid= http_pid=
cleanup() {
    [ -n "$http_pid" ] && kill "$http_pid" 2>/dev/null
    [ -n "$reactor_pid" ] && kill "$reactor_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

step "Start the reactor: every service on a port the OS chooses (port 0)"
printf '$ %s\n' >&2 "$bin/reactor --time 0 --echo 0 --daytime 0 --rfc868 0 --ticks $ticks --interval-ms $interval_ms --trace-events=json"
"$bin/reactor" --time 0 --echo 0 --daytime 0 --rfc868 0 --ticks "$ticks" \
    --interval-ms "$interval_ms" --trace-events=json >"$work/listening" 2>"$work/reactor.log" &
reactor_pid=$!
for _ in $(seq 100); do
    [ "$(wc -l <"$work/listening")" -ge 8 ] && break
    sleep 0.05
done
cat "$work/listening"
[ "$(wc -l <"$work/listening")" -ge 8 ] || { echo "demo: the reactor did not start" >&2; cat "$work/reactor.log" >&2; exit 1; }
addr() { awk -v s="$1" -v p="$2" '$2 == s && $3 == p { print $4 }' "$work/listening"; }
port() { addr "$1" "$2" | sed 's/.*://'; }

step "Time stream over TCP: greet, $ticks ticks $interval_ms ms apart, Au Revoir"
show "$bin/time-client" --interval-ms "$interval_ms" --greeting Bonjour "$(addr time tcp)"

step "The same over UDP: one datagram per tick"
show "$bin/time-client" --udp --interval-ms "$interval_ms" "$(addr time udp)"

step "Echo over TCP and UDP"
printf 'Bonjour\nhello, world\n' | show "$bin/echo-client" "$(addr echo tcp)"
printf 'one datagram\nanother\n' | show "$bin/echo-client" --udp "$(addr echo udp)"

step "Third-party clients, where installed"
if have nc; then
    show nc -d 127.0.0.1 "$(port daytime tcp)"
    printf '\n' | show nc -u -w1 127.0.0.1 "$(port daytime udp)"
    printf 'Salut\n' | show nc -N 127.0.0.1 "$(port time tcp)"
else
    echo "(nc not installed: apt-get install -y netcat-openbsd)"
fi
if have rdate; then
    show rdate -p -o "$(port rfc868 tcp)" 127.0.0.1
    show rdate -p -u -o "$(port rfc868 udp)" 127.0.0.1
else
    echo "(rdate not installed: apt-get install -y rdate)"
fi
if have socat; then
    printf 'binary\0safe\377\n' | show socat -t 1 - "TCP:$(addr echo tcp)" | od -c
else
    echo "(socat not installed: apt-get install -y socat)"
fi

step "The HTTP client against python's http.server"
if have python3; then
    mkdir "$work/www"
    printf 'Hello from a server nobody here wrote.\n' >"$work/www/hello.txt"
    python3 -u -m http.server 0 --bind 127.0.0.1 --directory "$work/www" >"$work/http.log" 2>&1 &
    http_pid=$!
    http_port=
    for _ in $(seq 100); do
        http_port=$(sed -n 's/.*port \([0-9]*\).*/\1/p' "$work/http.log" | head -1)
        [ -n "$http_port" ] && break
        sleep 0.05
    done
    [ -n "$http_port" ] || { echo "demo: http.server did not start" >&2; exit 1; }
    show "$bin/http-client" -i "http://127.0.0.1:$http_port/hello.txt"
    show "$bin/http-client" -X HEAD -i "http://127.0.0.1:$http_port/hello.txt"
else
    echo "(python3 not installed)"
fi

step "What the loop saw: the first TCP time session, in the words of --trace-events"
if have python3; then
    # Its token, e.g. #9.12 (slab slot 9, generation 12), is on the record that accepted it;
    # the JSON records are shown as `--trace-events` (words) prints them.
    python3 - "$work/reactor.log" <<'PY'
import json, sys
records = [json.loads(line) for line in open(sys.argv[1]) if line.startswith("{")]
token = next(r["token"] for r in records if r.get("what") == "accepted" and r["text"].startswith("accepted time tcp"))
mine = {r["wakeup"] for r in records if r.get("token") == token}
for r in records:
    if r.get("token") == token or (r["kind"] == "wakeup" and r["wakeup"] in mine):
        indent = {"wakeup": "", "event": "  ", "timer": "  "}.get(r["kind"], "    ")
        text = r["text"] if r["kind"] != "action" else f"{token}: {r['text']}"
        print(f"+{r['t_us'] // 1000000}.{r['t_us'] % 1000000:06d} s {indent}{text}")
PY
    step "The whole run as a timeline page"
    mkdir -p target/demo
    grep '^{' "$work/reactor.log" >target/demo/trace.jsonl || true
    show scripts/timeline.sh target/demo/trace.jsonl >target/demo/timeline.html
    echo "timeline: $(pwd)/target/demo/timeline.html ($(wc -l <target/demo/trace.jsonl) records; open it in a browser)"
else
    echo "(python3 not installed: the trace stays JSON in the reactor's log)"
fi

step "Graceful stop: SIGTERM"
show kill -TERM "$reactor_pid"
status=0
wait "$reactor_pid" || status=$?
reactor_pid=
echo "reactor exited with status $status"
grep -v '^{' "$work/reactor.log" | tail -2
[ "$status" -eq 0 ]
echo
echo "demo: OK"
