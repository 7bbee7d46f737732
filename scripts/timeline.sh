#!/usr/bin/env bash
# Draws a `reactor --trace-events=json` trace as one self-contained HTML page: time across, one
# row per token, each wakeup a band, every record a mark (hover for its line of the trace).
#
#   reactor --trace-events=json 2> trace.jsonl     # talk to it, then stop it
#   scripts/timeline.sh trace.jsonl > timeline.html
#
# The reactor's whole stderr will do: lines that are not JSON objects are skipped. The page
# needs nothing else (no network, no build step); tests/timeline.rs loads it in Chromium.
set -euo pipefail
if [ $# -ne 1 ]; then
    echo "usage: scripts/timeline.sh TRACE.jsonl > timeline.html   (- reads stdin)" >&2
    exit 2
fi
command -v python3 >/dev/null || {
    echo "timeline.sh: python3 is needed (apt-get install -y python3)" >&2
    exit 1
}
exec python3 "$(dirname "$0")/timeline.py" "$1"
