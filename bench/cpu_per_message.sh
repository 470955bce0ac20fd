#!/usr/bin/env bash
# CPU per message of the Socket.IO layer alone (crates/server/examples/socketio_alone.rs):
# 100 users in private pairs at a fixed open-loop rate, the server's CPU
# (utime + stime from /proc/<pid>/stat) over 8 s in the middle of a 14 s
# phase, divided by the messages sent meanwhile. Each message is one frame
# in and two out (the delivery and the echo standing in for an ack).
#
#   bash bench/cpu_per_message.sh [RATE=25000]
set -euo pipefail
cd "$(dirname "$0")/.."
ulimit -n "$(ulimit -Hn)"
RATE=${1:-25000}
cargo build --release -q -p palaver-bench
cargo build --release -q -p palaver --example socketio_alone
target/release/examples/socketio_alone 127.0.0.1:3210 > /dev/null 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:3210/socket.io/?EIO=4&transport=polling" && break; sleep 0.1; done
ticks() { awk '{print $14 + $15}' "/proc/$PID/stat"; }
target/release/palaver-bench --target reference --servers 127.0.0.1:3210 --jwt-secret x \
  --users 100 --rate "$RATE" --duration 14 --label cpu > /dev/null 2>&1 &
BENCH=$!
sleep 5   # connecting, then the phase's first seconds
a=$(ticks); sleep 8; b=$(ticks)
wait $BENCH || true
hz=$(getconf CLK_TCK)
awk -v a="$a" -v b="$b" -v hz="$hz" -v rate="$RATE" 'BEGIN {
  cpu = (b - a) / hz / 8
  printf "layer alone at %d msg/s: %.0f %% of a core, %.1f µs per message\n", rate, cpu * 100, cpu / rate * 1e6
}'
