#!/usr/bin/env bash
# scripts/bench.sh — the reactor against its baselines, all measured in one run on this machine.
#
#   scripts/bench.sh            full run (about 6 minutes once built)
#   scripts/bench.sh --quick    smoke run (about 2 minutes): shorter runs, fewer sessions
#   BENCH_ONLY=udp-echo scripts/bench.sh [--quick]   one scenario (pingpong, syscalls, stream,
#                               udp-echo, time, scale, idle, tcpkali) and the targets it measures
#
# Builds everything in release mode (the reactor and the examples at the root, the bench crate
# in bench/, the C epoll echo servers, TCP and UDP, with cc -O2), installs the Debian tools it
# needs (strace; tcpkali where Debian packages it), then runs each scenario against each server
# in turn and prints one markdown table per scenario on stdout, each figure with its ratio to
# the reactor.
# Progress goes to stderr; every server's stdout/stderr and every raw loadgen line are kept in
# bench/target/bench-logs/<time>/.
#
# Servers: reactor (1 thread), the same with the kernel's buffer autotuning (reactor-autotune)
# and with its metrics endpoint on and scraped once a second (reactor-metrics),
# reactor --threads 2 ("n/a" if it has no such flag), the C epoll
# echo servers (echo only: epoll_echo.c over TCP, epoll_udp_echo.c over UDP), tokio
# current-thread (tokio-echo, tokio-echo --udp, tokio-time), and the thread-per-client example
# (target/release/examples/03_thread_per_client, or $TPC_BIN; "n/a" if absent).
# All traffic stays on 127.0.0.0/8; every run is bounded in time (the load generator's waits are
# bounded, and each server is stopped at the end of its scenario, killed if it does not stop).
set -euo pipefail

cd "$(dirname "$0")/.."
root=$PWD

usage() {
    sed -n '2,/bench-logs\/<time>/p' "$0" | sed 's/^# \{0,1\}//'
}

quick=0
while (($#)); do
    case $1 in
    --quick) quick=1 ;;
    -h | --help)
        usage
        exit 0
        ;;
    *)
        echo "bench: unknown option '$1' (see --help)" >&2
        exit 2
        ;;
    esac
    shift
done
scenarios=(pingpong syscalls stream udp-echo time scale idle tcpkali)
if [[ -n ${BENCH_ONLY:-} && " ${scenarios[*]} " != *" $BENCH_ONLY "* ]]; then
    echo "bench: BENCH_ONLY='$BENCH_ONLY' is none of: ${scenarios[*]}" >&2
    exit 2
fi

# ---- Scenario sizes --------------------------------------------------------------------------
if ((quick)); then
    pp_rounds=2 pp_secs=1 sc_secs=1 st_rounds=1 st_secs=2 ue_rounds=2 ue_secs=1
    ts_tcp=2000 ts_udp=2000 ts_ticks=3 idle_secs=2 tx_sessions=10000 tx_ticks=2
else
    pp_rounds=5 pp_secs=2 sc_secs=3 st_rounds=4 st_secs=3 ue_rounds=5 ue_secs=2
    ts_tcp=10000 ts_udp=10000 ts_ticks=10 idle_secs=5 tx_sessions=100000 tx_ticks=3
fi
pp_conns=100 pp_size=64 st_conns=50 st_write=16384 ts_interval=1000
ue_peers=100 ue_inflight=4 ue_size=64
# The time-scale load is exactly the reactor's default limits (10,000 connections, 10,000 UDP
# sessions) and comes from 100 addresses: give it headroom, as an operator expecting it would
# (--max-conns within the descriptor limit: one the limit cannot hold is refused at start).
reactor_headroom=(--max-conns $((ts_tcp * 3 / 2)) --max-conns-per-ip 30000 --max-udp-sessions 30000
    --max-udp-sessions-per-ip 30000 --udp-rate-per-ip 0)

# The 100,000-session scale ("tx"). Every TCP session is a descriptor of the server's, and the
# hard RLIMIT_NOFILE (20,000 on the bench machine) cannot be raised here: the servers hold as
# many TCP sessions as their own limit allows, less 100 for their other descriptors (the
# reactor's listeners, poller, timerfd, signal pipe, stdio and spares are about 25), and the
# rest are UDP sessions, which cost no descriptor on the server (one socket serves them all).
# --quick keeps the full run's mix at a tenth of the size.
nofile=$(ulimit -Hn)
[[ $nofile =~ ^[0-9]+$ ]] || nofile=1048576 # "unlimited"
tx_tcp=$((nofile - 100 < 100000 ? nofile - 100 : 100000))
((!quick)) || tx_tcp=$((tx_tcp / 10))
tx_udp=$((tx_sessions - tx_tcp))
# Interval 5 s, not 1 s: at 1 s, 100,000 sessions are 100,000 ticks a second, and a tick over
# loopback costs about 8 µs of kernel time on each side (sendto or write, delivery, waking the
# reader; 88 % of the reactor's CPU is system time), so server and load generator would need
# most of the two cores between them and the lateness would measure CPU saturation (p99 0.19 to
# 0.95 s, measured), not the server. At 5 s the tick rate is 20,000 a second, the rate of the 20,000-
# session scenario at 1 s: what differs is only how many sessions are held. The sessions open
# over one interval, so the run is about 5 + (ticks − 1) × 5 s.
tx_interval=5000
# The load generator spreads the sessions over 2,000 source addresses (127.0.0.1-127.0.7.208),
# at most 10 TCP and 41 UDP sessions and 9 datagrams a second each way per address, so the
# reactor's per-source defaults (100 connections, 100 UDP sessions, 100 datagrams/s) stay on.
# It needs two flags: its TCP sessions (--max-conns, default 10,000) and its UDP sessions
# (--max-udp-sessions, default 10,000).
tx_src_ips=2000
reactor_scale=(--max-conns "$tx_tcp" --max-udp-sessions "$tx_sessions")
# A thread costs the thread-per-client server 4 memory mappings (its stack and guard page, its
# signal stack and guard page): past vm.max_map_count / 4 threads (16,382 at the default 65530)
# creating one fails, a thread that cannot map its signal stack panics, and the process aborts
# with every session in it (measured: 16,169 threads). It gets the TCP sessions it can hold: at
# most 90 % of that.
max_maps=$(cat /proc/sys/vm/max_map_count 2>/dev/null || echo 65530)
tpc_tcp=$((max_maps * 9 / 40 < tx_tcp ? max_maps * 9 / 40 : tx_tcp))
# The echo loads come from one address too (100 connections): with --threads 2 each loop's
# share of the per-source cap would be 50, and the kernel's hash does not split them evenly.
echo_headroom=(--max-conns-per-ip 1000)
# The UDP echo load sends about 3,000 datagrams a second from each of its 100 source addresses;
# the reactor serves (and sends to) 100 a second per address by default (--udp-rate-per-ip, its
# reflection and flood guard) and would drop the rest unanswered: the table would measure the
# limit. 0 turns it off, as for a trusted client on loopback.
udp_echo_headroom=(--udp-rate-per-ip 0)

started=$SECONDS
logs=$root/bench/target/bench-logs/$(date +%Y%m%d-%H%M%S)
say() { printf '[bench %3ds] %s\n' $((SECONDS - started)) "$*" >&2; }

# ---- Cleanup: every background process we start is in `pids` until it is stopped ------------
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do
        kill -KILL "$pid" 2>/dev/null || true
    done
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT TERM

forget_pid() {
    local pid=$1 kept=() p
    for p in "${pids[@]}"; do
        [[ $p == "$pid" ]] || kept+=("$p")
    done
    pids=("${kept[@]}")
}

# ---- Tools -----------------------------------------------------------------------------------
# The servers and the load generator may each need 10,000+ descriptors.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

tcpkali_note=""
install_tools() {
    local need=()
    command -v strace >/dev/null || need+=(strace)
    command -v cc >/dev/null || need+=(gcc)
    command -v nstat >/dev/null || command -v ip >/dev/null || need+=(iproute2)
    if ! command -v apt-get >/dev/null || ((EUID != 0)); then
        ((${#need[@]} == 0)) || say "cannot install ${need[*]} (not root or no apt-get)"
        command -v tcpkali >/dev/null || tcpkali_note="tcpkali: not installed and cannot be installed here"
        return 0
    fi
    if ((${#need[@]})) || ! command -v tcpkali >/dev/null; then
        say "apt-get update"
        apt-get update -qq >"$logs/apt.log" 2>&1 || say "apt-get update failed (see $logs/apt.log)"
    fi
    if ! command -v tcpkali >/dev/null; then
        if apt-cache policy tcpkali 2>/dev/null | grep -q 'Candidate: [0-9]'; then
            need+=(tcpkali)
        else
            local release
            # shellcheck source=/dev/null
            release=$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-this release}")
            tcpkali_note="tcpkali: not packaged in Debian $release (apt-cache policy tcpkali: no candidate); third-party cross-check skipped"
        fi
    fi
    if ((${#need[@]})); then
        say "apt-get install ${need[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >>"$logs/apt.log" 2>&1 ||
            say "apt-get install failed (see $logs/apt.log)"
    fi
}

mkdir -p "$logs"
install_tools
command -v strace >/dev/null || {
    echo "bench: strace is required" >&2
    exit 1
}

# perf counts syscalls without slowing the server (strace's ptrace stops do); optional.
perf_ok=0
if command -v perf >/dev/null &&
    perf stat -x, -e raw_syscalls:sys_enter -- true >/dev/null 2>&1; then
    perf_ok=1
fi

# ---- Build -----------------------------------------------------------------------------------
say "building (release): reactor and examples, bench crate, C epoll echo (TCP and UDP)"
cargo build --release --quiet --bins --examples
cargo build --release --quiet --manifest-path bench/Cargo.toml
cc -O2 -Wall -o bench/target/epoll_echo bench/c/epoll_echo.c
cc -O2 -Wall -o bench/target/epoll_udp_echo bench/c/epoll_udp_echo.c

reactor=$root/target/release/reactor
loadgen=$root/bench/target/release/loadgen
tokio_echo=$root/bench/target/release/tokio-echo
tokio_time=$root/bench/target/release/tokio-time
c_echo=$root/bench/target/epoll_echo
c_udp_echo=$root/bench/target/epoll_udp_echo
tpc=${TPC_BIN:-$root/target/release/examples/03_thread_per_client}
clk_tck=$(getconf CLK_TCK)

# ---- Helpers ---------------------------------------------------------------------------------

# kv KEY LINE: the value of KEY in a loadgen `key=value ...` line (empty when absent).
kv() {
    local line=" $2 "
    local rest=${line#* "$1"=}
    [[ $rest == "$line" ]] || printf '%s' "${rest%% *}"
}

# calc EXPR: floating-point arithmetic; prints nothing when an operand is missing or not a number.
calc() {
    awk "BEGIN { x = $1; if (x == x + 0 && x \"\" != \"nan\" && x \"\" != \"inf\") printf \"%.6g\", x }" 2>/dev/null || true
}
isnum() { [[ $1 =~ ^-?[0-9]+([.][0-9]+)?([eE][-+]?[0-9]+)?$ ]]; }
# fmt DECIMALS VALUE: fixed decimals, or "–" when VALUE is not a number.
fmt() {
    if isnum "${2:-}"; then printf "%.${1}f" "$2"; else printf '–'; fi
}
# ratio VALUE BASE: VALUE / BASE as "1.23×", or "–".
ratio() {
    if isnum "${1:-}" && isnum "${2:-}" && [[ $(calc "($2) != 0") == 1 ]]; then
        printf '%.2f×' "$(calc "$1 / $2")"
    else
        printf '–'
    fi
}

# CPU time of a process (all its threads, live and exited), in clock ticks.
cpu_ticks() {
    # Fields after "pid (comm) ": state is $1, so utime (field 14) is $12 and stime $13.
    sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | awk '{ print $12 + $13 }'
}
status_kib() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status" 2>/dev/null; }

# Listen-queue overflows of this network namespace (SYNs dropped because a backlog was full).
listen_overflows() {
    awk '$1 == "TcpExt:" { if (!col) { for (i = 2; i <= NF; i++) if ($i == "ListenOverflows") col = i }
                           else print $col }' /proc/net/netstat 2>/dev/null
}

# start_server NAME PATTERN... -- CMD...: starts CMD, waits (10 s at most) until its stdout has a
# line matching each PATTERN. Sets `server_pid` and `server_out`. Returns the server's exit
# status if it died first (2 = it rejected its command line), 1 on timeout.
start_server() {
    local name=$1 patterns=() status=0
    shift
    while [[ $1 != -- ]]; do
        patterns+=("$1")
        shift
    done
    shift
    server_out=$logs/$name.out
    : >"$server_out" # exists before the first grep, however late the server starts
    "$@" >"$server_out" 2>"$logs/$name.err" &
    server_pid=$!
    pids+=("$server_pid")
    local deadline=$((SECONDS + 10)) pattern
    for pattern in "${patterns[@]}"; do
        until grep -q "$pattern" "$server_out"; do
            if ! kill -0 "$server_pid" 2>/dev/null; then
                wait "$server_pid" || status=$?
                forget_pid "$server_pid"
                return $((status ? status : 1))
            fi
            if ((SECONDS >= deadline)); then
                say "$name: no '$pattern' line within 10 s"
                stop_server "$server_pid"
                return 1
            fi
            sleep 0.05
        done
    done
}

# stop_server PID: SIGTERM, then SIGKILL after 3 s.
stop_server() {
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 60; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    forget_pid "$pid"
}

# addr_of SERVICE PROTO: the address a started server announced.
addr_of() { awk -v s="$1" -v p="$2" '$1 == "listening" && $2 == s && $3 == p { print $4; exit }' "$server_out"; }

# run_loadgen LOGNAME ARGS...: runs the load generator; prints its report line (empty on failure).
run_loadgen() {
    local name=$1 line
    shift
    if line=$("$loadgen" "$@" 2>>"$logs/$name.loadgen.err"); then
        printf '%s\n' "$line" | tee -a "$logs/$name.loadgen.out"
    else
        say "$name: loadgen failed (see $logs/$name.loadgen.err)"
    fi
}

# Why a server has no figures (set by start_for).
declare -A na
# start_for NAME KIND...: starts server NAME (reactor, reactor-2t, c-epoll, tokio, thread-per-client)
# for KIND echo (TCP), udp-echo, time (the time-stream scale) or scale (the same at 100,000
# sessions); returns non-zero (with na[NAME] set) when it cannot run.
start_for() {
    local name=$1 kind=$2 status=0 cmd=() service=${2/scale/time}
    unset "na[$name]"
    case $name/$kind in
    reactor/echo) cmd=("$reactor" --time off --echo 0 --daytime off --rfc868 off "${echo_headroom[@]}" -q) ;;
    # The same reactor with the kernel's buffer autotuning (what it did before --sndbuf/--rcvbuf):
    # the cost of bounding each connection's kernel memory, measured side by side.
    reactor-autotune/echo) cmd=("$reactor" --time off --echo 0 --daytime off --rfc868 off
        --sndbuf 0 --rcvbuf 0 "${echo_headroom[@]}" -q) ;;
    # The same reactor with its metrics endpoint on, scraped once a second while it serves (as a
    # Prometheus with scrape_interval 1s would): what --metrics costs, side by side. The counters
    # themselves are always kept, so their cost is in every reactor figure.
    reactor-metrics/echo) cmd=("$reactor" --time off --echo 0 --daytime off --rfc868 off
        --metrics 127.0.0.1:0 "${echo_headroom[@]}" -q) ;;
    reactor-2t/echo) cmd=("$reactor" --threads 2 --time off --echo 0 --daytime off --rfc868 off
        "${echo_headroom[@]}" -q) ;;
    reactor/time) cmd=("$reactor" --time 0 --echo off --daytime off --rfc868 off
        --ticks "$ts_ticks" --interval-ms "$ts_interval" "${reactor_headroom[@]}" -q) ;;
    reactor/udp-echo) cmd=("$reactor" --time off --echo 0 --daytime off --rfc868 off
        "${udp_echo_headroom[@]}" -q) ;;
    # The same reactor waking for its timers by epoll_wait's millisecond timeout instead of its
    # timerfd (what it did before): what ticks on time cost in wakeups and CPU, side by side.
    reactor-coarse/time) cmd=("$reactor" --coarse-timers --time 0 --echo off --daytime off --rfc868 off
        --ticks "$ts_ticks" --interval-ms "$ts_interval" "${reactor_headroom[@]}" -q) ;;
    reactor-2t/time) cmd=("$reactor" --threads 2 --time 0 --echo off --daytime off --rfc868 off
        --ticks "$ts_ticks" --interval-ms "$ts_interval" "${reactor_headroom[@]}" -q) ;;
    reactor/scale) cmd=("$reactor" --time 0 --echo off --daytime off --rfc868 off
        --ticks "$tx_ticks" --interval-ms "$tx_interval" "${reactor_scale[@]}" -q) ;;
    c-epoll/echo) cmd=("$c_echo") ;;
    c-epoll/udp-echo) cmd=("$c_udp_echo") ;;
    tokio/echo) cmd=("$tokio_echo") ;;
    tokio/udp-echo) cmd=("$tokio_echo" --udp) ;;
    tokio/time) cmd=("$tokio_time" --ticks "$ts_ticks" --interval-ms "$ts_interval") ;;
    tokio/scale) cmd=("$tokio_time" --ticks "$tx_ticks" --interval-ms "$tx_interval") ;;
    thread-per-client/echo) cmd=("$tpc" --time off --echo 0 --ticks 1 --interval-ms 1000) ;;
    thread-per-client/time) cmd=("$tpc" --time 0 --echo off --ticks "$ts_ticks" --interval-ms "$ts_interval") ;;
    thread-per-client/scale) cmd=("$tpc" --time 0 --echo off --ticks "$tx_ticks" --interval-ms "$tx_interval") ;;
    *) return 1 ;;
    esac
    if [[ ! -x ${cmd[0]} ]]; then
        na[$name]="n/a (${cmd[0]#"$root"/} not built)"
        return 1
    fi
    local patterns=("^listening $service tcp ")
    [[ $name == thread-per-client || $kind == echo ]] || patterns+=("^listening $service udp ")
    [[ $kind != udp-echo ]] || patterns=("^listening echo udp ")
    [[ $name != reactor-metrics ]] || patterns+=("^listening metrics tcp ")
    start_server "$name-$kind" "${patterns[@]}" -- "${cmd[@]}" || status=$?
    if ((status == 2)) && [[ $name == reactor-2t ]]; then
        na[$name]="n/a (no --threads)"
    elif ((status == 2)) && [[ $name == reactor-metrics ]]; then
        na[$name]="n/a (no --metrics)"
    elif ((status)); then
        na[$name]="n/a (did not start, status $status; see ${logs#"$root"/}/$name-$kind.err)"
    fi
    if ((status == 0)) && [[ $name == reactor-metrics ]]; then
        scrape_every_second "$server_pid" "$(addr_of metrics tcp)" "$logs/$name-$kind.scrapes" &
        pids+=("$!")
    fi
    return "$status"
}

# scrape_every_second PID ADDR LOG: GET /metrics from ADDR once a second for as long as PID
# lives (bash's /dev/tcp, no client to install); one line per scrape in LOG, with its size.
scrape_every_second() {
    local pid=$1 host=${2%:*} port=${2##*:} log=$3 bytes
    while kill -0 "$pid" 2>/dev/null; do
        bytes=$( { exec 3<>"/dev/tcp/$host/$port" &&
            printf 'GET /metrics HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' "$2" >&3 &&
            wc -c <&3; } 2>/dev/null) || bytes=failed
        echo "$(date +%T) ${bytes:-0}" >>"$log"
        sleep 1
    done
}

echo_servers=(reactor reactor-autotune reactor-metrics reactor-2t c-epoll tokio thread-per-client)
udp_echo_servers=(reactor c-epoll tokio)
time_servers=(reactor reactor-coarse reactor-2t tokio thread-per-client)
declare -A R # results: R[scenario.server.field]

# ---- Scenario 1: echo ping-pong --------------------------------------------------------------
# add KEY VALUE: R[KEY] += VALUE (empty VALUE adds nothing).
add() { R[$1]=$(calc "${R[$1]:-0} + ${2:-0}"); }
# range_of NUMBERS: "lowest–highest" of a space-separated list; empty for fewer than two.
range_of() {
    # shellcheck disable=SC2086 # the list is space-separated numbers
    printf '%s\n' $1 | sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { if (NR > 1) printf "%.0f–%.0f", lo, hi }'
}

scenario_pingpong() {
    local s line c0 c1 round
    # Rounds interleave the servers, so a burst of other work on this shared machine hurts some
    # rounds of each rather than all of one server's figures. Interference only ever lowers
    # msgs/s, so the best round is the least disturbed one: it is reported, with its latencies.
    for ((round = 1; round <= pp_rounds; round++)); do
        for s in "${echo_servers[@]}"; do
            start_for "$s" echo || continue
            say "ping-pong: $s, round $round/$pp_rounds (${pp_conns} conns × ${pp_size} B, ${pp_secs} s)"
            c0=$(cpu_ticks "$server_pid")
            line=$(run_loadgen "pingpong-$s" pingpong --addr "$(addr_of echo tcp)" \
                --conns "$pp_conns" --size "$pp_size" --secs "$pp_secs")
            c1=$(cpu_ticks "$server_pid")
            stop_server "$server_pid"
            [[ -n $line ]] || continue
            R[pp.$s.rates]+=" $(kv msgs_per_s "$line")"
            if [[ $(calc "$(kv msgs_per_s "$line") > ${R[pp.$s.rate]:-0}") == 1 ]]; then
                R[pp.$s.rate]=$(kv msgs_per_s "$line")
                R[pp.$s.p50]=$(kv p50_us "$line")
                R[pp.$s.p99]=$(kv p99_us "$line")
                R[pp.$s.client]=$(kv client_cpu_pct "$line")
            fi
            add "pp.$s.msgs" "$(kv msgs "$line")"
            add "pp.$s.secs" "$(kv secs "$line")"
            add "pp.$s.failed" "$(kv failed "$line")"
            add "pp.$s.cpu" "$(calc "($c1 - $c0) / $clk_tck")"
        done
    done
    for s in "${echo_servers[@]}"; do
        R[pp.$s.range]=$(range_of "${R[pp.$s.rates]:-}")
        R[pp.$s.cpu_pct]=$(calc "${R[pp.$s.cpu]:-@} / ${R[pp.$s.secs]:-@} * 100")
        R[pp.$s.us_per_msg]=$(calc "${R[pp.$s.cpu]:-@} / ${R[pp.$s.msgs]:-@} * 1e6")
    done
    local base_rate=${R[pp.reactor.rate]:-} base_cpu=${R[pp.reactor.us_per_msg]:-}
    echo
    echo "### Echo ping-pong: ${pp_size}-byte messages, 1 in flight per connection, ${pp_conns} connections, $((pp_rounds * pp_secs)) s"
    echo
    if ((pp_rounds > 1)); then
        echo "Each server ran $pp_rounds rounds of $pp_secs s, interleaved with the others; msgs/s, p50, p99 and loadgen CPU"
        echo "are the best round's (interference only lowers msgs/s); server CPU per message is over all rounds"
        echo "(utime + stime from /proc, all threads)."
        echo
    fi
    echo "| server | msgs/s | × reactor | range of rounds | p50 µs | p99 µs | server CPU µs/msg | × reactor | server CPU | loadgen CPU | failed |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    for s in "${echo_servers[@]}"; do
        if [[ -n ${na[$s]:-} ]]; then
            echo "| $s | ${na[$s]} | | | | | | | | | |"
            continue
        fi
        printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s %% | %s %% | %s |\n' "$s" \
            "$(fmt 0 "${R[pp.$s.rate]:-}")" "$(ratio "${R[pp.$s.rate]:-}" "$base_rate")" "${R[pp.$s.range]:-–}" \
            "$(fmt 0 "${R[pp.$s.p50]:-}")" "$(fmt 0 "${R[pp.$s.p99]:-}")" \
            "$(fmt 2 "${R[pp.$s.us_per_msg]:-}")" "$(ratio "${R[pp.$s.us_per_msg]:-}" "$base_cpu")" \
            "$(fmt 0 "${R[pp.$s.cpu_pct]:-}")" "$(fmt 0 "${R[pp.$s.client]:-}")" "$(fmt 0 "${R[pp.$s.failed]:-}")"
    done
}

# ---- Scenario 2: syscalls per echoed message -------------------------------------------------
# strace_total FILE: total calls in a `strace -c` summary; strace_calls FILE NAME: one syscall's.
strace_total() { awk '$NF == "total" { print $4 }' "$1" 2>/dev/null; }
strace_calls() { awk -v n="$2" '$NF == n && $1 ~ /^[0-9.]+$/ { print $4 }' "$1" 2>/dev/null; }
perf_count() { awk -F, -v e="$2" '$3 == e { print $1 }' "$1" 2>/dev/null; }

scenario_syscalls() {
    local s line file tracer msgs top
    for s in "${echo_servers[@]}"; do
        start_for "$s" echo || continue
        if ((perf_ok)); then
            say "syscalls: $s under perf stat (${sc_secs} s ping-pong)"
            file=$logs/perf-$s.csv
            perf stat -x, -o "$file" -p "$server_pid" \
                -e raw_syscalls:sys_enter,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_epoll_pwait \
                2>>"$logs/perf-$s.err" &
            tracer=$!
            pids+=("$tracer")
            sleep 0.3
            line=$(run_loadgen "syscalls-perf-$s" pingpong --addr "$(addr_of echo tcp)" \
                --conns "$pp_conns" --size "$pp_size" --secs "$sc_secs")
            kill -INT "$tracer" 2>/dev/null || true
            wait "$tracer" 2>/dev/null || true
            forget_pid "$tracer"
            msgs=$(kv msgs "$line")
            R[sc.$s.perf]=$(calc "$(perf_count "$file" raw_syscalls:sys_enter) / $msgs")
            R[sc.$s.perf_epoll]=$(calc "($(perf_count "$file" syscalls:sys_enter_epoll_wait) + $(perf_count "$file" syscalls:sys_enter_epoll_pwait)) / $msgs")
        fi
        say "syscalls: $s under strace -c -f (${sc_secs} s ping-pong)"
        file=$logs/strace-$s.txt
        strace -c -f -q -o "$file" -p "$server_pid" 2>>"$logs/strace-$s.err" &
        tracer=$!
        pids+=("$tracer")
        sleep 0.5 # attaching takes a moment; load sent before that would not be counted
        line=$(run_loadgen "syscalls-strace-$s" pingpong --addr "$(addr_of echo tcp)" \
            --conns "$pp_conns" --size "$pp_size" --secs "$sc_secs")
        kill -INT "$tracer" 2>/dev/null || true
        wait "$tracer" 2>/dev/null || true
        forget_pid "$tracer"
        stop_server "$server_pid"
        msgs=$(kv msgs "$line")
        R[sc.$s.strace]=$(calc "$(strace_total "$file") / $msgs")
        # The three busiest syscalls, per message.
        top=$(awk -v m="$msgs" '$1 ~ /^[0-9.]+$/ && $NF != "total" && m > 0 { printf "%s %.2f\n", $NF, $4 / m }' "$file" |
            sort -k2 -rn | head -3 | awk '{ printf "%s%s %s", sep, $1, $2; sep = ", " }')
        R[sc.$s.top]=${top:-–}
    done
    local base=${R[sc.reactor.perf]:-} base_s=${R[sc.reactor.strace]:-}
    echo
    echo "### Syscalls per echoed message (ping-pong as above, ${sc_secs} s each, all server threads)"
    echo
    echo "perf counts \`raw_syscalls:sys_enter\` without slowing the server; strace stops the server at"
    echo "every syscall, so events pile up and each \`epoll_wait\` returns more of them (fewer per message)."
    echo
    echo "| server | perf: syscalls/msg | × reactor | perf: epoll_wait/msg | strace -c: syscalls/msg | × reactor | strace -c: top 3 (calls/msg) |"
    echo "|---|---:|---:|---:|---:|---:|---|"
    for s in "${echo_servers[@]}"; do
        if [[ -n ${na[$s]:-} ]]; then
            echo "| $s | ${na[$s]} | | | | | |"
            continue
        fi
        printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$s" \
            "$(fmt 3 "${R[sc.$s.perf]:-}")" "$(ratio "${R[sc.$s.perf]:-}" "$base")" \
            "$(fmt 3 "${R[sc.$s.perf_epoll]:-}")" \
            "$(fmt 3 "${R[sc.$s.strace]:-}")" "$(ratio "${R[sc.$s.strace]:-}" "$base_s")" "${R[sc.$s.top]}"
    done
    if ((!perf_ok)); then
        echo
        echo "(perf is not usable here: strace figures only.)"
    fi
}

# ---- Scenario 3: echo streaming --------------------------------------------------------------
scenario_stream() {
    local s line c0 c1 round
    # Interleaved rounds, best one reported, as for ping-pong.
    for ((round = 1; round <= st_rounds; round++)); do
        for s in "${echo_servers[@]}"; do
            start_for "$s" echo || continue
            say "streaming: $s, round $round/$st_rounds (${st_conns} conns, ${st_write}-byte writes, ${st_secs} s)"
            c0=$(cpu_ticks "$server_pid")
            line=$(run_loadgen "stream-$s" stream --addr "$(addr_of echo tcp)" \
                --conns "$st_conns" --write "$st_write" --secs "$st_secs")
            c1=$(cpu_ticks "$server_pid")
            stop_server "$server_pid"
            [[ -n $line ]] || continue
            add "st.$s.failed" "$(kv failed "$line")"
            if [[ $(calc "$(kv mb_per_s "$line") > ${R[st.$s.mbs]:-0}") == 1 ]]; then
                R[st.$s.mbs]=$(kv mb_per_s "$line")
                R[st.$s.client]=$(kv client_cpu_pct "$line")
                R[st.$s.cpu_pct]=$(calc "($c1 - $c0) / $clk_tck / $(kv secs "$line") * 100")
            fi
        done
    done
    local base=${R[st.reactor.mbs]:-}
    echo
    echo "### Echo streaming: ${st_write}-byte writes, ${st_conns} connections, best of $st_rounds × ${st_secs} s (MB = 10⁶ bytes echoed back)"
    echo
    echo "| server | MB/s | × reactor | server CPU | loadgen CPU | failed |"
    echo "|---|---:|---:|---:|---:|---:|"
    for s in "${echo_servers[@]}"; do
        if [[ -n ${na[$s]:-} ]]; then
            echo "| $s | ${na[$s]} | | | | |"
            continue
        fi
        printf '| %s | %s | %s | %s %% | %s %% | %s |\n' "$s" \
            "$(fmt 0 "${R[st.$s.mbs]:-}")" "$(ratio "${R[st.$s.mbs]:-}" "$base")" \
            "$(fmt 0 "${R[st.$s.cpu_pct]:-}")" "$(fmt 0 "${R[st.$s.client]:-}")" "$(fmt 0 "${R[st.$s.failed]:-}")"
    done
}

# ---- Scenario 4: UDP echo --------------------------------------------------------------------
scenario_udp_echo() {
    local s line c0 c1 round
    # Interleaved rounds, best one reported, as for ping-pong.
    for ((round = 1; round <= ue_rounds; round++)); do
        for s in "${udp_echo_servers[@]}"; do
            start_for "$s" udp-echo || continue
            say "UDP echo: $s, round $round/$ue_rounds (${ue_peers} peers × ${ue_inflight} in flight × ${ue_size} B, ${ue_secs} s)"
            c0=$(cpu_ticks "$server_pid")
            line=$(run_loadgen "udp-echo-$s" udp-echo --addr "$(addr_of echo udp)" \
                --peers "$ue_peers" --inflight "$ue_inflight" --size "$ue_size" --secs "$ue_secs")
            c1=$(cpu_ticks "$server_pid")
            stop_server "$server_pid"
            [[ -n $line ]] || continue
            R[ue.$s.rates]+=" $(kv replies_per_s "$line")"
            if [[ $(calc "$(kv replies_per_s "$line") > ${R[ue.$s.rate]:-0}") == 1 ]]; then
                R[ue.$s.rate]=$(kv replies_per_s "$line")
                R[ue.$s.p50]=$(kv p50_us "$line")
                R[ue.$s.p99]=$(kv p99_us "$line")
                R[ue.$s.client]=$(kv client_cpu_pct "$line")
            fi
            add "ue.$s.replies" "$(kv replies "$line")"
            add "ue.$s.secs" "$(kv secs "$line")"
            add "ue.$s.failed" "$(kv failed "$line")"
            add "ue.$s.lost" "$(kv lost "$line")"
            add "ue.$s.cpu" "$(calc "($c1 - $c0) / $clk_tck")"
        done
    done
    for s in "${udp_echo_servers[@]}"; do
        R[ue.$s.range]=$(range_of "${R[ue.$s.rates]:-}")
        R[ue.$s.cpu_pct]=$(calc "${R[ue.$s.cpu]:-@} / ${R[ue.$s.secs]:-@} * 100")
        R[ue.$s.us_per_dgram]=$(calc "${R[ue.$s.cpu]:-@} / ${R[ue.$s.replies]:-@} * 1e6")
    done
    local base_rate=${R[ue.reactor.rate]:-} base_cpu=${R[ue.reactor.us_per_dgram]:-}
    echo
    echo "### UDP echo: ${ue_size}-byte datagrams, ${ue_inflight} in flight per peer, ${ue_peers} peers, $((ue_rounds * ue_secs)) s"
    echo
    echo "Each peer is a socket of its own (spread over 127.0.0.1–127.0.0.100); a datagram unanswered"
    echo "for 50 ms is lost and replaced. Replies/s, p50, p99 and loadgen CPU are the best round's; server"
    echo "CPU per datagram echoed is over all rounds (utime + stime from /proc), and so are failed and lost."
    echo
    echo "| server | replies/s | × reactor | range of rounds | p50 µs | p99 µs | server CPU µs/datagram | × reactor | server CPU | loadgen CPU | failed / lost |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    for s in "${udp_echo_servers[@]}"; do
        if [[ -n ${na[$s]:-} ]]; then
            echo "| $s | ${na[$s]} | | | | | | | | | |"
            continue
        fi
        printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s %% | %s %% | %s / %s |\n' "$s" \
            "$(fmt 0 "${R[ue.$s.rate]:-}")" "$(ratio "${R[ue.$s.rate]:-}" "$base_rate")" "${R[ue.$s.range]:-–}" \
            "$(fmt 0 "${R[ue.$s.p50]:-}")" "$(fmt 0 "${R[ue.$s.p99]:-}")" \
            "$(fmt 2 "${R[ue.$s.us_per_dgram]:-}")" "$(ratio "${R[ue.$s.us_per_dgram]:-}" "$base_cpu")" \
            "$(fmt 0 "${R[ue.$s.cpu_pct]:-}")" "$(fmt 0 "${R[ue.$s.client]:-}")" \
            "$(fmt 0 "${R[ue.$s.failed]:-}")" "$(fmt 0 "${R[ue.$s.lost]:-}")"
    done
}

# ---- Scenario 5: time-stream scale -----------------------------------------------------------
# idle_check PID LABEL: syscalls of an idle server over `idle_secs` (strace -c -f).
idle_check() {
    local pid=$1 label=$2 file=$logs/idle-$2.txt status=0
    timeout -s INT "$idle_secs" strace -c -f -q -o "$file" -p "$pid" 2>>"$logs/idle-$label.err" || status=$?
    if ((status != 124)); then # 124: timeout stopped strace, as intended; anything else failed
        say "idle check $label: strace did not run (status $status; see $logs/idle-$label.err)"
        return 0
    fi
    # strace -c writes no table at all when there was no syscall.
    R[idle.$label.total]=$(strace_total "$file")
    R[idle.$label.epoll]=$(strace_calls "$file" epoll_wait)
    : "${R[idle.$label.total]:=0}" "${R[idle.$label.epoll]:=0}"
}

# peak_threads PID FILE: samples the thread count every 0.2 s; the running maximum is in FILE.
peak_threads() {
    local pid=$1 file=$2 max=0 now
    while kill -0 "$pid" 2>/dev/null; do
        now=$(status_kib "$pid" Threads)
        if [[ -n $now ]] && ((now > max)); then
            max=$now
            echo "$max" >"$file"
        fi
        sleep 0.2
    done
}

# The waits of an event loop: every wakeup is one of these calls (whichever the runtime uses).
wait_syscalls=(epoll_wait epoll_pwait epoll_pwait2)
# The thread-per-client server has no event loop: each client's thread sleeps between ticks
# (clock_nanosleep), so its wakeups are those sleeps (plus a read per greeting, not counted).
sleep_syscalls=(clock_nanosleep)
# perf stat refuses a tracepoint this kernel lacks, so each is tried once.
declare -A have_tracepoint
for call in "${wait_syscalls[@]}" "${sleep_syscalls[@]}"; do
    if ((perf_ok)) && perf stat -x, -e "syscalls:sys_enter_$call" -- true >/dev/null 2>&1; then
        have_tracepoint[$call]=1
    fi
done

# wakeups_start PID LABEL SYSCALL...: counts PID's calls of SYSCALL (all its threads, those
# started later too) under perf stat, until wakeups_stop. Nothing without perf.
wakeups_start() {
    local pid=$1 label=$2 events=() call
    shift 2
    wakeups_tracer=
    for call in "$@"; do
        [[ -z ${have_tracepoint[$call]:-} ]] || events+=("syscalls:sys_enter_$call")
    done
    ((${#events[@]})) || return 0
    perf stat -x, -o "$logs/wakeups-$label.csv" -p "$pid" -e "$(
        IFS=,
        echo "${events[*]}"
    )" 2>>"$logs/wakeups-$label.err" &
    wakeups_tracer=$!
    pids+=("$wakeups_tracer")
    sleep 0.3 # attaching takes a moment; calls before that would not be counted
}

# wakeups_stop LABEL SECONDS KEY: stops the count; R[KEY] = the calls per second over SECONDS
# (the load's duration: the server is idle, and makes none of these calls, outside it). Not in
# a subshell: only this shell can wait for perf to write its figures.
wakeups_stop() {
    [[ -n $wakeups_tracer ]] || return 0
    kill -INT "$wakeups_tracer" 2>/dev/null || true
    wait "$wakeups_tracer" 2>/dev/null || true
    forget_pid "$wakeups_tracer"
    # `<not counted>` and the like are no number: then there is no figure.
    local calls
    calls=$(awk -F, '$3 ~ /^syscalls:/ { n += $1; ok = ok && $1 ~ /^[0-9]+$/ } BEGIN { ok = 1 }
                     END { if (ok && NR) print n }' "$logs/wakeups-$1.csv" 2>/dev/null)
    R[$3]=$(calc "${calls:-@} / $2")
}

# time_load TAG SERVER TCP UDP TICKS INTERVAL SRC_IPS IDLE_LABEL: one time-scale load against
# the server start_for started; its figures in R[TAG.SERVER.*]. A server without UDP gets only
# the TCP sessions. After the load the reactor is checked for idle wakeups (IDLE_LABEL), and
# the server is stopped.
time_load() {
    local tag=$1 s=$2 tcp=$3 udp=$4 ticks=$5 interval=$6 src_ips=$7 idle_label=$8
    local tcp_addr udp_addr line c0 c1 rss0 o0 o1 sampler t0 t1 waits=("${wait_syscalls[@]}")
    tcp_addr=$(addr_of time tcp)
    udp_addr=$(addr_of time udp)
    [[ -n $udp_addr ]] || udp=0
    [[ $s != thread-per-client ]] || waits=("${sleep_syscalls[@]}")
    say "$tag: $s ($tcp TCP + $udp UDP sessions from $src_ips addresses, $ticks ticks at ${interval} ms)"
    rss0=$(status_kib "$server_pid" VmRSS)
    c0=$(cpu_ticks "$server_pid")
    o0=$(listen_overflows)
    echo 0 >"$logs/threads-$tag-$s"
    peak_threads "$server_pid" "$logs/threads-$tag-$s" &
    sampler=$!
    pids+=("$sampler")
    wakeups_start "$server_pid" "$tag-$s" "${waits[@]}"
    t0=$EPOCHREALTIME
    line=$(run_loadgen "$tag-$s" time-scale --tcp "$tcp_addr" --udp "${udp_addr:-off}" \
        --sessions-tcp "$tcp" --sessions-udp "$udp" --ticks "$ticks" --interval-ms "$interval" \
        --src-ips "$src_ips")
    t1=$EPOCHREALTIME
    wakeups_stop "$tag-$s" "$(calc "$t1 - $t0")" "$tag.$s.wakeups"
    R[$tag.$s.wakeups_of]=${waits[*]}
    c1=$(cpu_ticks "$server_pid")
    o1=$(listen_overflows)
    R[$tag.$s.hwm]=$(status_kib "$server_pid" VmHWM)
    kill "$sampler" 2>/dev/null || true
    wait "$sampler" 2>/dev/null || true
    forget_pid "$sampler"
    if [[ $s == reactor && -n $idle_label ]]; then
        say "idle check: the reactor after the load (${idle_secs} s under strace -c)"
        sleep 0.5 # let the last connections finish closing
        idle_check "$server_pid" "$idle_label"
    fi
    stop_server "$server_pid"
    R[$tag.$s.sessions]="$tcp + $udp"
    R[$tag.$s.count]=$((tcp + udp))
    R[$tag.$s.ticks]=$(kv ticks "$line")
    R[$tag.$s.expected]=$(kv expected "$line")
    R[$tag.$s.failed]=$(kv failed "$line")
    R[$tag.$s.failures]=$(kv failures "$line")
    R[$tag.$s.p50]=$(kv p50_ms "$line")
    R[$tag.$s.p99]=$(kv p99_ms "$line")
    R[$tag.$s.p99_tcp]=$(kv p99_ms_tcp "$line")
    R[$tag.$s.p99_udp]=$(kv p99_ms_udp "$line")
    R[$tag.$s.max]=$(kv max_ms "$line")
    R[$tag.$s.p50_timed]=$(kv p50_ms_timed "$line")
    R[$tag.$s.p99_timed]=$(kv p99_ms_timed "$line")
    R[$tag.$s.p50_first]=$(kv p50_ms_first "$line")
    R[$tag.$s.p99_first]=$(kv p99_ms_first "$line")
    R[$tag.$s.peak_live]=$(kv peak_live "$line")
    R[$tag.$s.cpu]=$(calc "($c1 - $c0) / $clk_tck")
    R[$tag.$s.per_session]=$(calc "(${R[$tag.$s.hwm]:-@} - ${rss0:-@}) / $((tcp + udp))")
    R[$tag.$s.threads]=$(cat "$logs/threads-$tag-$s")
    R[$tag.$s.overflows]=$(calc "$o1 - $o0")
}

# time_table TAG SERVER...: the table of a time-scale scenario, and each server's failures.
time_table() {
    local tag=$1 s wakeups
    shift
    local base=${R[$tag.reactor.per_session]:-}
    echo "| server | sessions (TCP + UDP) | peak live | ticks delivered / expected | failed sessions | lateness p50 ms | p99 ms | p99 TCP / UDP ms | max ms | timer ticks p50 / p99 ms | first tick p50 / p99 ms | peak RSS MiB | RSS KiB/session | × reactor | CPU s | wakeups/s | peak threads | listen overflows |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    for s in "$@"; do
        if [[ -n ${na[$s]:-} ]]; then
            echo "| $s | ${na[$s]} | | | | | | | | | | | | | | | | |"
            continue
        fi
        wakeups=$(fmt 0 "${R[$tag.$s.wakeups]:-}")
        [[ $wakeups == – || ${R[$tag.$s.wakeups_of]:-} != "${sleep_syscalls[*]}" ]] || wakeups+=" (sleeps)"
        printf '| %s | %s | %s | %s / %s | %s | %s | %s | %s / %s | %s | %s / %s | %s / %s | %s | %s | %s | %s | %s | %s | %s |\n' "$s" \
            "${R[$tag.$s.sessions]}" "${R[$tag.$s.peak_live]:-–}" "${R[$tag.$s.ticks]:-–}" "${R[$tag.$s.expected]:-–}" \
            "${R[$tag.$s.failed]:-–}" "$(fmt 2 "${R[$tag.$s.p50]}")" "$(fmt 2 "${R[$tag.$s.p99]}")" \
            "$(fmt 1 "${R[$tag.$s.p99_tcp]}")" "$(fmt 1 "${R[$tag.$s.p99_udp]}")" "$(fmt 1 "${R[$tag.$s.max]}")" \
            "$(fmt 2 "${R[$tag.$s.p50_timed]}")" "$(fmt 2 "${R[$tag.$s.p99_timed]}")" \
            "$(fmt 2 "${R[$tag.$s.p50_first]}")" "$(fmt 2 "${R[$tag.$s.p99_first]}")" \
            "$(fmt 1 "$(calc "${R[$tag.$s.hwm]:-@} / 1024")")" "$(fmt 2 "${R[$tag.$s.per_session]}")" \
            "$(ratio "${R[$tag.$s.per_session]}" "$base")" "$(fmt 2 "${R[$tag.$s.cpu]}")" "$wakeups" \
            "${R[$tag.$s.threads]:-–}" "${R[$tag.$s.overflows]:-–}"
    done
    for s in "$@"; do
        if [[ -z ${na[$s]:-} && ${R[$tag.$s.failures]:--} != - ]]; then
            echo
            echo "$s failures: \`${R[$tag.$s.failures]}\`"
        fi
    done
}

# What the timer and first-tick columns say, under each table.
lateness_note() {
    echo "Timer ticks: every tick but the first of each session, i.e. those a timer sent. First tick: sent"
    echo "as soon as the greeting is read, so its lateness is a plain round trip with no timer in it —"
    echo "the floor any server's ticks meet on this machine under this load."
}

# What the wakeups/s column counts, under each table.
wakeups_note() {
    if ((!perf_ok)); then
        echo "wakeups/s: – (perf is not usable here)."
        return 0
    fi
    echo "wakeups/s: the server's \`epoll_wait\`/\`epoll_pwait\`/\`epoll_pwait2\` calls (perf stat on the"
    echo "\`syscalls:sys_enter_*\` tracepoints, all threads) over the load's duration; for"
    echo "thread-per-client, which has no event loop, its threads' \`clock_nanosleep\` calls (sleeps)."
}

scenario_time() {
    local s
    for s in "${time_servers[@]}"; do
        start_for "$s" time || continue
        time_load ts "$s" "$ts_tcp" "$ts_udp" "$ts_ticks" "$ts_interval" 100 after-load
    done
    echo
    echo "### Time-stream scale: $ts_tcp TCP + $ts_udp UDP sessions, $ts_ticks ticks each at ${ts_interval} ms"
    echo
    echo "Sessions open evenly over the first interval (at most 100 waiting for their first tick),"
    echo "so every session is live at once; lateness of tick k = arrival − (greeting sent + k × interval)."
    lateness_note
    wakeups_note
    echo
    time_table ts "${time_servers[@]}"
}

# ---- Scenario 4b: 100,000 sessions ------------------------------------------------------------
scale_servers=(reactor tokio thread-per-client)

scenario_scale() {
    local s tcp
    for s in "${scale_servers[@]}"; do
        start_for "$s" scale || continue
        tcp=$tx_tcp
        [[ $s != thread-per-client ]] || tcp=$tpc_tcp
        time_load tx "$s" "$tcp" "$tx_udp" "$tx_ticks" "$tx_interval" "$tx_src_ips" after-scale
    done
    echo
    echo "### $tx_sessions sessions: $tx_tcp TCP + $tx_udp UDP, $tx_ticks ticks each at ${tx_interval} ms"
    echo
    echo "TCP sessions: what one process's descriptor limit ($nofile) holds, less 100; the rest are UDP."
    echo "The load generator spreads them over worker processes (each under its own limit) and over"
    echo "$tx_src_ips source addresses in 127.0.0.0/8; the reactor runs \`${reactor_scale[*]}\`."
    echo "thread-per-client has no UDP and holds at most vm.max_map_count / 4 threads: it gets $tpc_tcp"
    echo "TCP sessions (at most 90 % of $((max_maps / 4))); past that it aborts (16,169 threads, measured)."
    lateness_note
    wakeups_note
    echo
    time_table tx "${scale_servers[@]}"
}

# ---- Scenario 6: idle wakeups ----------------------------------------------------------------
scenario_idle() {
    say "idle check: a fresh reactor, every service on (${idle_secs} s under strace -c)"
    if start_server reactor-idle "^listening rfc868 udp " -- \
        "$reactor" --time 0 --echo 0 --daytime 0 --rfc868 0 -q; then
        sleep 0.5
        idle_check "$server_pid" fresh
        stop_server "$server_pid"
    fi
    echo
    echo "### Idle reactor: syscalls while nobody talks to it (strace -c -f -p, ${idle_secs} s)"
    echo
    echo "| reactor | syscalls | epoll_wait returns | wakeups/s |"
    echo "|---|---:|---:|---:|"
    local label
    for label in fresh after-load after-scale; do
        [[ -n ${R[idle.$label.total]:-} ]] || continue
        printf '| %s | %s | %s | %s |\n' "$label" "${R[idle.$label.total]}" "${R[idle.$label.epoll]}" \
            "$(fmt 1 "$(calc "${R[idle.$label.epoll]} / $idle_secs")")"
    done
}

# ---- Scenario 7: third-party cross-check (tcpkali) -------------------------------------------
scenario_tcpkali() {
    echo
    echo "### Cross-check with a third-party load generator"
    echo
    if ! command -v tcpkali >/dev/null; then
        echo "${tcpkali_note:-tcpkali: not available}"
        return 0
    fi
    local s
    for s in reactor c-epoll tokio; do
        start_for "$s" echo || continue
        say "tcpkali: $s (${st_conns} connections streaming ${st_write}-byte messages, ${st_secs} s)"
        tcpkali --connections "$st_conns" --duration "${st_secs}s" \
            --message "$(head -c "$st_write" /dev/zero | tr '\0' x)" \
            "$(addr_of echo tcp)" >"$logs/tcpkali-$s.txt" 2>&1 || true
        stop_server "$server_pid"
        echo "- $s: $(grep -iE 'aggregate bandwidth' "$logs/tcpkali-$s.txt" | tr -s ' ' | paste -sd ';' -)"
    done
}

# ---- Targets ---------------------------------------------------------------------------------
verdict() { # verdict VALUE OP LIMIT
    if ! isnum "${1:-}"; then
        printf 'not measured'
    elif [[ $(calc "($1) $2 ($3)") == 1 ]]; then
        printf 'pass'
    else
        printf '**FAIL**'
    fi
}

targets() {
    local r_c r_t cpu_c sys ticks_ok threads_r buf_pp buf_st metrics_pp ue_cpu_c ue_r_t tx_all
    local st_t ts_vs_tokio ts_cpu
    r_c=$(calc "${R[pp.reactor.rate]:-@} / ${R[pp.c-epoll.rate]:-@}")
    r_t=$(calc "${R[pp.reactor.rate]:-@} / ${R[pp.tokio.rate]:-@}")
    cpu_c=$(calc "${R[pp.reactor.us_per_msg]:-@} / ${R[pp.c-epoll.us_per_msg]:-@}")
    sys=${R[sc.reactor.perf]:-${R[sc.reactor.strace]:-}}
    ticks_ok=$(calc "${R[ts.reactor.ticks]:-@} / ${R[ts.reactor.expected]:-@}")
    threads_r=$(calc "${R[pp.reactor-2t.rate]:-@} / ${R[pp.reactor.rate]:-@}")
    buf_pp=$(calc "${R[pp.reactor.rate]:-@} / ${R[pp.reactor-autotune.rate]:-@}")
    buf_st=$(calc "${R[st.reactor.mbs]:-@} / ${R[st.reactor-autotune.mbs]:-@}")
    metrics_pp=$(calc "${R[pp.reactor-metrics.rate]:-@} / ${R[pp.reactor.rate]:-@}")
    ue_cpu_c=$(calc "${R[ue.reactor.us_per_dgram]:-@} / ${R[ue.c-epoll.us_per_dgram]:-@}")
    ue_r_t=$(calc "${R[ue.reactor.rate]:-@} / ${R[ue.tokio.rate]:-@}")
    st_t=$(calc "${R[st.reactor.mbs]:-@} / ${R[st.tokio.mbs]:-@}")
    ts_vs_tokio=$(calc "${R[ts.tokio.p99]:-@} / ${R[ts.reactor.p99]:-@}")
    ts_cpu=$(calc "${R[ts.reactor.cpu]:-@} / ${R[ts.reactor-coarse.cpu]:-@}")
    # Every tick of every session: the sessions held count as much as the ticks.
    tx_all=$(calc "(${R[tx.reactor.ticks]:-@} / ${R[tx.reactor.expected]:-@}) * (${R[tx.reactor.count]:-@} >= $tx_sessions)")
    echo
    echo "### Targets (reactor, this run$( ((quick)) && echo ", --quick: smaller loads than the targets assume"))"
    echo
    echo "| target | measured | result |"
    echo "|---|---:|---|"
    echo "| ping-pong msgs/s ≥ 0.97× C epoll | $(fmt 3 "$r_c")× | $(verdict "$r_c" '>=' 0.97) |"
    echo "| ping-pong msgs/s ≥ 1.0× tokio current-thread | $(fmt 3 "$r_t")× | $(verdict "$r_t" '>=' 1.0) |"
    echo "| server CPU per message ≤ 1.05× C epoll | $(fmt 3 "$cpu_c")× | $(verdict "$cpu_c" '<=' 1.05) |"
    echo "| ≤ 2.05 syscalls per echoed message ($( ((perf_ok)) && echo perf || echo strace)) | $(fmt 3 "$sys") | $(verdict "$sys" '<=' 2.05) |"
    echo "| time stream: all ticks delivered | ${R[ts.reactor.ticks]:-–} / ${R[ts.reactor.expected]:-–} | $(verdict "$ticks_ok" '>=' 1) |"
    echo "| time stream: p99 lateness ≤ 0.25 ms (--coarse-timers: $(fmt 2 "${R[ts.reactor-coarse.p99]:-}") ms) | $(fmt 2 "${R[ts.reactor.p99]:-}") ms | $(verdict "${R[ts.reactor.p99]:-}" '<=' 0.25) |"
    echo "| time stream: p50 lateness ≤ 0.1 ms (--coarse-timers: $(fmt 2 "${R[ts.reactor-coarse.p50]:-}") ms) | $(fmt 2 "${R[ts.reactor.p50]:-}") ms | $(verdict "${R[ts.reactor.p50]:-}" '<=' 0.1) |"
    echo "| time stream: p99 lateness ≥ 10× better than tokio's ($(fmt 2 "${R[ts.tokio.p99]:-}") ms) | $(fmt 1 "$ts_vs_tokio")× | $(verdict "$ts_vs_tokio" '>=' 10) |"
    echo "| time stream: server CPU ≤ 1.1× the millisecond timeout's (--coarse-timers) | $(fmt 3 "$ts_cpu")× | $(verdict "$ts_cpu" '<=' 1.1) |"
    echo "| time stream: timer ticks p50 / p99, timerfd (--coarse-timers) | $(fmt 2 "${R[ts.reactor.p50_timed]:-}") / $(fmt 2 "${R[ts.reactor.p99_timed]:-}") ms ($(fmt 2 "${R[ts.reactor-coarse.p50_timed]:-}") / $(fmt 2 "${R[ts.reactor-coarse.p99_timed]:-}")) | info |"
    echo "| time stream: first tick (a round trip, no timer) p50 / p99 | $(fmt 2 "${R[ts.reactor.p50_first]:-}") / $(fmt 2 "${R[ts.reactor.p99_first]:-}") ms | info |"
    echo "| time stream: wakeups/s, timerfd / --coarse-timers | $(fmt 0 "${R[ts.reactor.wakeups]:-}") / $(fmt 0 "${R[ts.reactor-coarse.wakeups]:-}") | info |"
    echo "| RSS ≤ 32 MiB at $((ts_tcp + ts_udp)) sessions | $(fmt 1 "$(calc "${R[ts.reactor.hwm]:-@} / 1024")") MiB | $(verdict "$(calc "${R[ts.reactor.hwm]:-@} / 1024")" '<=' 32) |"
    echo "| idle: 0 wakeups/s (fresh / after load) | $(fmt 1 "$(calc "${R[idle.fresh.epoll]:-@} / $idle_secs")") / $(fmt 1 "$(calc "${R[idle.after-load.epoll]:-@} / $idle_secs")") | $(verdict "$(calc "${R[idle.fresh.epoll]:-@} + ${R[idle.after-load.epoll]:-@}")" '==' 0) |"
    echo "| $tx_sessions sessions: all ticks delivered | ${R[tx.reactor.ticks]:-–} / ${R[tx.reactor.expected]:-–} ($(fmt 0 "${R[tx.reactor.count]:-}") sessions) | $(verdict "$tx_all" '>=' 1) |"
    echo "| $tx_sessions sessions: p99 lateness ≤ 1 ms | $(fmt 2 "${R[tx.reactor.p99]:-}") ms | $(verdict "${R[tx.reactor.p99]:-}" '<=' 1) |"
    echo "| $tx_sessions sessions: peak RSS ≤ 48 MiB | $(fmt 1 "$(calc "${R[tx.reactor.hwm]:-@} / 1024")") MiB ($(fmt 2 "${R[tx.reactor.per_session]:-}") KiB/session) | $(verdict "$(calc "${R[tx.reactor.hwm]:-@} / 1024")" '<=' 48) |"
    echo "| $tx_sessions sessions: idle after, 0 wakeups/s | $(fmt 1 "$(calc "${R[idle.after-scale.epoll]:-@} / $idle_secs")") | $(verdict "${R[idle.after-scale.epoll]:-}" '==' 0) |"
    echo "| streaming MB/s ≥ 1.0× tokio current-thread | $(fmt 3 "$st_t")× | $(verdict "$st_t" '>=' 1.0) |"
    echo "| streaming MB/s, both with the kernel's buffer autotuning: reactor-autotune / tokio | $(fmt 3 "$(calc "${R[st.reactor-autotune.mbs]:-@} / ${R[st.tokio.mbs]:-@}")")× | info |"
    echo "| bounded socket buffers vs autotuning, ping-pong msgs/s ≥ 0.95× | $(fmt 3 "$buf_pp")× | $(verdict "$buf_pp" '>=' 0.95) |"
    echo "| bounded socket buffers vs autotuning, streaming MB/s ≥ 0.95× | $(fmt 3 "$buf_st")× | $(verdict "$buf_st" '>=' 0.95) |"
    echo "| --metrics on (scraped each second) vs off, ping-pong msgs/s ≥ 0.98× | ${na[reactor-metrics]:-$(fmt 3 "$metrics_pp")×} | $(verdict "$metrics_pp" '>=' 0.98) |"
    echo "| --threads 2 vs 1, ping-pong msgs/s | ${na[reactor-2t]:-$(fmt 2 "$threads_r")×} | info |"
    echo "| UDP echo: server CPU per datagram ≤ 1.0× C epoll | $(fmt 3 "$ue_cpu_c")× | $(verdict "$ue_cpu_c" '<=' 1.0) |"
    echo "| UDP echo: replies/s, reactor / tokio current-thread | $(fmt 2 "$ue_r_t")× | info |"
}

# ---- Run -------------------------------------------------------------------------------------
say "logs in ${logs#"$root"/}"
echo "## inetloop benchmarks — $(date '+%Y-%m-%d %H:%M %Z')$( ((quick)) && echo ' (--quick)')"
echo
echo "$(nproc) cores ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)), $(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo); load generator and servers share the cores; ratios are from this one run."
echo "Load average at the start: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine skews msgs/s more than CPU per message)."
if [[ -n ${TPC_BIN:-} ]]; then
    echo "thread-per-client: \`$TPC_BIN\` (TPC_BIN)"
fi
# BENCH_ONLY=NAME runs that one scenario (the targets table then says "not measured" for the rest).
for scenario in "${scenarios[@]}"; do
    [[ -z ${BENCH_ONLY:-} || $BENCH_ONLY == "$scenario" ]] || continue
    "scenario_${scenario//-/_}"
done
targets
echo
echo "Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg); raw results in bench/target/bench-logs/${logs##*/}/."
say "done in $((SECONDS - started)) s"
