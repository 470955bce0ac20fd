#!/usr/bin/env bash
# Reproduces BENCHMARKS.md: Palaver and the reference Node server side by
# side on this machine, same database server, same load generator, one run.
#
#   bash bench/run.sh                 # everything (about 25 minutes)
#   SCENARIOS="private100" bash bench/run.sh
#
# Needs MariaDB on 127.0.0.1:3306 (root, no password; the run sets its
# buffer pool to 2 GiB, MARIADB_BUFFER_POOL=bytes to change), PostgreSQL on
# 127.0.0.1:5432 (postgres, trust), Redis on 127.0.0.1:6379, and Node.js
# with npm for the reference server (bench/reference, installed from its
# package-lock.json with `npm ci`). Results: target/bench/*.json
# and a Markdown table on stdout (target/bench/summary.md).
set -euo pipefail
cd "$(dirname "$0")/.."
ulimit -n "$(ulimit -Hn)"

OUT=${OUT:-target/bench}
DURATION=${DURATION:-5}
SCENARIOS=${SCENARIOS:-"private100 private10000 group16 idle alone cpu sqlite postgres cluster"}
SECRET=benchsecret
mkdir -p "$OUT"

cargo build --release -q -p palaver -p palaver-bench
cargo build --release -q -p palaver --example socketio_alone
BENCH=target/release/palaver-bench
ALONE=target/release/examples/socketio_alone
PALAVER=${PALAVER:-target/release/palaver}  # PALAVER=path compares another build

# MariaDB's buffer pool as a deployment on this machine would size it.
# Its default, 128 MiB, is smaller than the messages table and its indexes
# after one 10,000-user search (about 250 MiB); from there each commit
# waits on page flushes (24 -> up to 117 us a message) and the phases
# after one that overloaded the server fail with refusals, so the
# searches measured MariaDB's default instead of the chat servers
# (bench/results/HISTORY.md, twenty-sixth run). Both servers use the same
# MariaDB; the setting is restored at exit. Without the privilege to set
# it the run goes on with a warning.
POOL=${MARIADB_BUFFER_POOL:-2147483648}
POOL_BEFORE=$(mariadb -uroot -Nse "SELECT @@innodb_buffer_pool_size")
if mariadb -uroot -e "SET GLOBAL innodb_buffer_pool_size = $POOL"; then
  sleep 2 # the resize runs in the background
else
  echo "warning: MariaDB's buffer pool stays at $POOL_BEFORE bytes" >&2
fi

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true
  mariadb -uroot -e "SET GLOBAL innodb_buffer_pool_size = $POOL_BEFORE" || true
}
trap cleanup EXIT

wait_http() { for _ in $(seq 1 300); do curl -s -o /dev/null "http://$1" && return 0; sleep 0.1; done; echo "no server at $1"; exit 1; }

# The reference server (bench/reference): installed once per run from its
# lock file; a fresh chat_system database each time it starts.
REFERENCE=bench/reference
reference_installed=
start_reference() {
  if [ -z "$reference_installed" ]; then
    (cd "$REFERENCE" && npm ci --no-audit --no-fund --silent)
    reference_installed=1
  fi
  mariadb -uroot < "$REFERENCE/schema.sql"
  PORT=3100 node "$REFERENCE/server.js" >> "$OUT/reference.log" 2>&1 &
  REF_PID=$!; pids+=("$REF_PID")
  wait_http 127.0.0.1:3100/socket.io/?EIO=4\&transport=polling
}

start_palaver() { # $1 = database URL, $2 = port (4100), then extra flags
  local url=$1 port=${2:-4100}; shift; shift || true
  "$PALAVER" serve --listen "127.0.0.1:$port" --database-url "$url" --jwt-secret "$SECRET" --message-rate 0 "$@" \
    > "$OUT/palaver-$port.log" 2>&1 &
  PAL_PID=$!; pids+=("$PAL_PID")
  wait_http "127.0.0.1:$port/healthz"
}

start_alone() {
  "$ALONE" 127.0.0.1:3200 >> "$OUT/alone.log" 2>&1 &
  ALONE_PID=$!; pids+=("$ALONE_PID")
  wait_http 127.0.0.1:3200/socket.io/?EIO=4\&transport=polling
}

fresh_mysql() { mariadb -uroot -e "DROP DATABASE IF EXISTS palaver_bench; CREATE DATABASE palaver_bench"; }
fresh_pg() {
  psql -qU postgres -h 127.0.0.1 -c "DROP DATABASE IF EXISTS palaver_bench WITH (FORCE)" -c "CREATE DATABASE palaver_bench"
}
stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

# Palaver's sends carry a clientMsgId, as a client that retries sends them
# (the reference server has no such thing).
KEYS=(--client-msg-ids)
# Every user sends one message before the measured phases, so that no phase
# pays for creating conversations (a first message costs more than the rest).
WARM=(--warm-up-rate 2000)
bench() { # name target port pid args...
  local name=$1 target=$2 port=$3 pid=$4; shift 4
  echo "== $name" >&2
  [ "$target" = palaver ] && set -- "${KEYS[@]}" "$@"
  "$BENCH" --target "$target" --servers "127.0.0.1:$port" --jwt-secret "$SECRET" \
    --server-pid "$pid" --duration "$DURATION" --label "$name" --json "$OUT/$name.json" "${WARM[@]}" "$@"
}

for s in $SCENARIOS; do
  case $s in
    private100|private10000)
      users=${s#private}
      start_reference
      bench "reference-$s" reference 3100 "$REF_PID" --users "$users" --search --search-start 1000
      stop "$REF_PID"
      fresh_mysql; start_palaver mysql://root@127.0.0.1:3306/palaver_bench
      bench "palaver-mysql-$s" palaver 4100 "$PAL_PID" --users "$users" --search --search-start 4000
      stop "$PAL_PID" ;;
    group16)
      start_reference
      bench "reference-$s" reference 3100 "$REF_PID" --scenario group --users 1600 --group-size 16 --search --search-start 300
      stop "$REF_PID"
      fresh_mysql; start_palaver mysql://root@127.0.0.1:3306/palaver_bench
      bench "palaver-mysql-$s" palaver 4100 "$PAL_PID" --scenario group --users 1600 --group-size 16 --search --search-start 1000
      stop "$PAL_PID" ;;
    idle)
      start_reference
      bench "reference-idle" reference 3100 "$REF_PID" --scenario idle --users 15000 --source-ips 16
      stop "$REF_PID"
      fresh_mysql; start_palaver mysql://root@127.0.0.1:3306/palaver_bench
      bench "palaver-mysql-idle" palaver 4100 "$PAL_PID" --scenario idle --users 15000 --source-ips 16
      stop "$PAL_PID" ;;
    alone)
      # The Socket.IO transport as Palaver sets it up, without Palaver: the
      # ceiling of the layer it is built on (crates/server/examples/socketio_alone.rs).
      # A fresh process for idle, whose RSS is measured from its start.
      start_alone
      bench "alone-private100" reference 3200 "$ALONE_PID" --users 100 --search --search-start 4000
      bench "alone-private10000" reference 3200 "$ALONE_PID" --users 10000 --search --search-start 4000
      stop "$ALONE_PID"
      start_alone
      bench "alone-idle" reference 3200 "$ALONE_PID" --scenario idle --users 15000 --source-ips 16
      stop "$ALONE_PID" ;;
    cpu)
      # CPU per message of the Socket.IO layer alone at 25,000 msg/s.
      bash bench/cpu_per_message.sh 25000 | tee "$OUT/cpu.txt" ;;
    sqlite)
      rm -f "$OUT"/bench.db*; start_palaver "sqlite://$OUT/bench.db"
      bench "palaver-sqlite-private100" palaver 4100 "$PAL_PID" --users 100 --search --search-start 4000
      stop "$PAL_PID" ;;
    postgres)
      fresh_pg; start_palaver postgres://postgres@127.0.0.1:5432/palaver_bench
      bench "palaver-postgres-private100" palaver 4100 "$PAL_PID" --users 100 --search --search-start 4000
      stop "$PAL_PID" ;;
    cluster)
      # One node vs two nodes, both with Redis, on one MariaDB database;
      # users alternate between the nodes, so most deliveries cross Redis.
      redis=(--redis-url redis://127.0.0.1:6379 --redis-prefix palaver-bench)
      fresh_mysql; start_palaver mysql://root@127.0.0.1:3306/palaver_bench 4100 "${redis[@]}"
      bench "palaver-redis-1node-private100" palaver 4100 "$PAL_PID" --users 100 --search --search-start 4000
      stop "$PAL_PID"
      fresh_mysql; start_palaver mysql://root@127.0.0.1:3306/palaver_bench 4100 "${redis[@]}"; first=$PAL_PID
      start_palaver mysql://root@127.0.0.1:3306/palaver_bench 4101 "${redis[@]}"
      "$BENCH" --target palaver --servers 127.0.0.1:4100,127.0.0.1:4101 --jwt-secret "$SECRET" \
        --server-pid "$first" --duration "$DURATION" --label palaver-redis-2nodes-private100 \
        --json "$OUT/palaver-redis-2nodes-private100.json" --users 100 --search --search-start 4000 "${KEYS[@]}" "${WARM[@]}"
      stop "$first"; stop "$PAL_PID" ;;
    *) echo "unknown scenario $s"; exit 1 ;;
  esac
done

python3 bench/summary.py "$OUT" | tee "$OUT/summary.md"
