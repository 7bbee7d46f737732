#!/usr/bin/env bash
# Checks the systemd units in contrib/systemd with `systemd-analyze verify`, failing on any
# warning, plus a consistency check of our own (socket names and ports against ExecStart).
#
#   contrib/systemd/verify.sh            # after `cargo build`: target/debug/reactor
#                                        # (or $CARGO_TARGET_DIR/debug/reactor)
#   REACTOR=/path/to/reactor contrib/systemd/verify.sh
#
# Why a copy: `systemd-analyze verify` fails a unit whose ExecStart= binary does not exist or
# is not executable, and the units name the installed path, /usr/local/bin/reactor, which a CI
# machine or a checkout does not have. So the units are copied to a temporary directory, that
# path is rewritten to the freshly built binary, and the copies are verified. Nothing else in
# them is changed.
#
# How it judges: systemd-analyze prints parse errors ("Unknown key …", "Failed to parse …") as
# warnings and may still exit 0, so the exit status alone proves nothing. With
# --recursive-errors=no (systemd 250 and later) it exits non-zero on any warning about the
# units given, and only about them; and every line it prints is inspected anyway. The only
# lines tolerated are warnings located in some *other* unit file of the host (a path outside
# our copy, with no "inetloop" in it: an installed drop-in for our units counts as ours):
# verify also loads the units ours depend on
# (sockets.target, multi-user.target, and what they pull in), and an old or third-party unit
# on a developer's machine may draw a warning there ("… is obsolete", "Unknown key …"). That
# is the host's business, not a fault of ours; such lines are shown as "ignored (host unit)".
# One more line is the host talking, not our units: "Binding to IPv6 address not available
# since kernel does not support IPv6." (a container or kernel without IPv6: systemd then skips
# the sockets' [::] lines, and the units still work over IPv4); shown as "ignored (host)".
# Anything else — a line about our units, or any other line that names no file — fails.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
installed=/usr/local/bin/reactor
# cargo's target directory: $CARGO_TARGET_DIR if set (relative to the project root, where .ci/run
# runs cargo), else target/.
target="${CARGO_TARGET_DIR:-target}"
[[ "$target" == /* ]] || target="$root/$target"
reactor="${REACTOR:-$target/debug/reactor}"

fail() {
    echo "verify.sh: $*" >&2
    exit 1
}

if ! command -v systemd-analyze >/dev/null; then
    fail "systemd-analyze not found; install it with:
    apt-get update && apt-get install -y systemd"
fi
[ -x "$reactor" ] ||
    fail "$reactor is not an executable file; run 'cargo build' first (or set REACTOR=)"
# ExecStart= wants an absolute path.
reactor="$(cd "$(dirname "$reactor")" && pwd)/$(basename "$reactor")"
case "$reactor" in # it goes into a sed replacement and an ExecStart= line
    *[[:space:]\|\&\\]*) fail "no blanks, '|', '&' or '\\' in the binary's path: $reactor" ;;
esac

units=()
for unit in "$here"/*.socket "$here"/*.service; do
    [ -e "$unit" ] && units+=("$(basename "$unit")")
done
((${#units[@]})) || fail "no unit files in $here"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

for unit in "${units[@]}"; do
    # Every command must be the installed binary, so that the rewrite below covers them all.
    if grep -E '^Exec[A-Za-z]*=' "$here/$unit" | grep -v -F "=$installed " >/dev/null; then
        fail "$unit: an Exec line that does not run $installed"
    fi
    sed "s|$installed|$reactor|g" "$here/$unit" >"$work/$unit"
done

# Our own check, which systemd cannot make: each inetloop-NAME.socket names its descriptors
# NAME (the service the reactor will match them to), listens on one port for TCP and UDP,
# activates inetloop.service, and both services serve NAME on that same port.
flag_port() { # unit file, service name → the port given to --NAME in its ExecStart
    sed -n "s/^ExecStart=.* --$2 \([0-9a-z]*\).*/\1/p" "$1"
}
for socket in "$here"/inetloop-*.socket; do
    name="$(basename "$socket" .socket)"
    name="${name#inetloop-}"
    case "$name" in
        time | echo | daytime | rfc868) ;;
        *) fail "$(basename "$socket"): '$name' is not a service of the reactor" ;;
    esac
    grep -qx "FileDescriptorName=$name" "$socket" ||
        fail "$(basename "$socket"): FileDescriptorName= must be '$name'"
    grep -qx "Service=inetloop.service" "$socket" ||
        fail "$(basename "$socket"): Service= must be inetloop.service"
    ports="$(sed -n 's/^Listen\(Stream\|Datagram\)=.*:\([0-9]*\)$/\2/p' "$socket" | sort -u)"
    [ "$(printf '%s\n' "$ports" | grep -c .)" = 1 ] ||
        fail "$(basename "$socket"): expected one port for all Listen lines, found: $ports"
    if ! grep -q '^ListenStream=' "$socket" || ! grep -q '^ListenDatagram=' "$socket"; then
        fail "$(basename "$socket"): needs both ListenStream= (TCP) and ListenDatagram= (UDP)"
    fi
    for service in inetloop.service inetloop-standalone.service; do
        [ "$(flag_port "$here/$service" "$name")" = "$ports" ] ||
            fail "$service: ExecStart must have --$name $ports, as $(basename "$socket")"
    done
done

cd "$work"
args=()
help="$(systemd-analyze --help 2>&1 || true)"
if [[ "$help" == *--recursive-errors* ]]; then
    args+=(--recursive-errors=no)
fi
echo "verify.sh: systemd-analyze verify ${args[*]:+${args[*]} }${units[*]}"
echo "verify.sh: (copies in $work, $installed rewritten to $reactor)"
status=0
output="$(systemd-analyze verify "${args[@]}" "${units[@]}" 2>&1)" || status=$?

no_ipv6="Binding to IPv6 address not available since kernel does not support IPv6."
bad=0
while IFS= read -r line; do
    [ -n "$line" ] || continue
    file="${line%%:*}"
    if [[ "$line" == /*:* && "$file" != "$work"/* && "$file" != *inetloop* ]]; then
        echo "verify.sh: ignored (host unit): $line"
    elif [ "$line" = "$no_ipv6" ]; then
        echo "verify.sh: ignored (host): $line"
    else
        echo "verify.sh: $line" >&2
        bad=1
    fi
done <<<"$output"

if ((status != 0 || bad)); then
    fail "FAILED: systemd-analyze exit status $status, and the lines above"
fi
echo "verify.sh: ok: ${#units[@]} units, no warning about them"
