#!/usr/bin/env bash
# Two palaver release binaries, alternated, on the private100 search
# (MariaDB, a fresh database each run): a regression shows in one hour's
# numbers rather than across hosts. USERS=10000 runs the private10000
# search instead; GROUP_SIZE=16 the groups-of-16 search (1,600 users).
#
#   bash bench/ab_private100.sh /path/to/palaver-a /path/to/palaver-b [rounds]
#   USERS=10000 bash bench/ab_private100.sh A B 4
#   GROUP_SIZE=16 bash bench/ab_private100.sh A B 3
#
# Needs MariaDB on 127.0.0.1:3306 and target/release/palaver-bench
# (cargo build --release -p palaver-bench). Prints each phase's line.
set -u
ulimit -n "$(ulimit -Hn)"
cd "$(dirname "$0")/.."
A=$1 B=$2 ROUNDS=${3:-2} USERS=${USERS:-100} GROUP_SIZE=${GROUP_SIZE:-}
SCENARIO=(--users "$USERS" --search-start 4000)
[ -n "$GROUP_SIZE" ] && SCENARIO=(--scenario group --users 1600 --group-size "$GROUP_SIZE" --search-start 1000)
BENCH=target/release/palaver-bench
# The buffer pool bench/run.sh sets (see there), restored at exit.
POOL_BEFORE=$(mariadb -uroot -Nse "SELECT @@innodb_buffer_pool_size")
mariadb -uroot -e "SET GLOBAL innodb_buffer_pool_size = ${MARIADB_BUFFER_POOL:-2147483648}"
trap 'mariadb -uroot -e "SET GLOBAL innodb_buffer_pool_size = $POOL_BEFORE"' EXIT
run() { # label binary
  mariadb -uroot -e "DROP DATABASE IF EXISTS palaver_bench; CREATE DATABASE palaver_bench"
  "$2" serve --listen 127.0.0.1:4100 --message-rate 0 \
    --database-url mysql://root@127.0.0.1:3306/palaver_bench --jwt-secret benchsecret \
    > "/tmp/ab-$1.log" 2>&1 &
  local pid=$!
  for _ in $(seq 1 300); do curl -s -o /dev/null http://127.0.0.1:4100/healthz && break; sleep 0.1; done
  "$BENCH" --target palaver --servers 127.0.0.1:4100 --jwt-secret benchsecret --server-pid "$pid" \
    --duration 5 --label "$1" --client-msg-ids --warm-up-rate 2000 "${SCENARIO[@]}" \
    --search 2>&1 | grep -E "HELD|not held" | sed "s/^/$1 /"
  kill "$pid"; wait "$pid" 2>/dev/null
}
for i in $(seq 1 "$ROUNDS"); do
  run "a$i" "$A"
  run "b$i" "$B"
done
