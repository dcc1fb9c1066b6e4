#!/usr/bin/env bash
# Shared mode (issue 12) against its PostgreSQL baselines, in the same run: the published MiniQueue.Host with
# -postgres and otherwise its default flags, on a throwaway PostgreSQL cluster on this machine (the Debian binaries,
# fsync and synchronous_commit on, as installed), beside pgbench running the one-statement queue the issue names.
#
#   benchmarks/shared/run.sh                      # ROUNDS=3 DURATION=8 PREFILL=200000
#   ROUNDS=1 DURATION=3 PREFILL=10000 benchmarks/shared/run.sh     # a quick check that it works
#   BLOAT=600 benchmarks/shared/run.sh            # instead: the table's size under steady load for 600 s
#
# Each round runs these, one after the other, in an order that alternates from round to round:
#   pg-pub     pgbench -c 64 -j 2 -T DURATION, INSERT INTO q (body) VALUES (10 bytes)              -> tps
#   pub        h2load -c 8 -m 8 (64 concurrent) -D DURATION, 10-byte bodies, through one host        -> req/s
#   pub2       the same load through each of two hosts at once (128 concurrent)                       -> total req/s
#   pg-cons    pgbench -c 12 -T DURATION, DELETE FROM q WHERE id = (SELECT id FROM q ORDER BY id LIMIT 1
#              FOR UPDATE SKIP LOCKED) RETURNING body, on q filled with PREFILL rows (a run that empties q
#              is reported: its DELETEs of nothing would count)                                       -> tps
#   cons       MiniQueue.HttpBench consume (MiniQueueClient, receive+ACK), 12 streams over 4 connections, one
#              host, topic filled with PREFILL 100-byte messages, ends early at 90 % of them          -> msg/s
#   cons2      the same through each of two hosts at once, topic filled with 2 x PREFILL              -> total msg/s
#   handoff    (after the rounds, 3 times) MiniQueue.HttpBench handoff: a consumer waits on the second host, one
#              message at a time is published through the first; from the publish's start to the delivery: p50/p99
# Before each load the tables are emptied (TRUNCATE) and vacuumed, so no load pays for the previous one's dead rows.
# The table gives the median (min-max) of the rounds and the per-round ratios of pub to pg-pub and cons to pg-cons.
#
# BLOAT=S: one host; a publisher at a fixed rate (RATE, default 1500/s, HttpBench publish --rate) and 12 consuming
# streams, both for S seconds; every 30 s it records the queue's depth and the size of miniqueue_messages (heap and
# indexes: pg_total_relation_size) with its live and dead rows and autovacuum's count, to show whether the size stays
# flat under steady load.
#
# Needs PostgreSQL's server binaries and pgbench (apt-get install -y postgresql), h2load (nghttp2-client), openssl,
# curl and the .NET SDK. Runs the cluster as the postgres user when root. Installs nothing.
# Results: RESULTS (default artifacts/bench-shared/<time>): run.log, raw.txt, commands.txt, the servers' logs.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$(pwd)

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-8}
PREFILL=${PREFILL:-200000}
BLOAT=${BLOAT:-0}
RATE=${RATE:-1500}
PG_PORT=${PG_PORT:-55490}
BASE_PORT=${BASE_PORT:-18490}
RESULTS=${RESULTS:-artifacts/bench-shared/$(date +%Y%m%d-%H%M%S)}

pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
missing=()
[ -n "$pg_bin" ] && [ -x "$pg_bin/initdb" ] || missing+=("PostgreSQL's server binaries (apt-get install -y postgresql)")
[ -n "$pg_bin" ] && [ -x "$pg_bin/pgbench" ] || missing+=("pgbench (apt-get install -y postgresql-contrib or postgresql)")
command -v h2load >/dev/null || missing+=("h2load (apt-get install -y nghttp2-client)")
command -v openssl >/dev/null || missing+=("openssl")
command -v curl >/dev/null || missing+=("curl")
command -v dotnet >/dev/null || missing+=("the .NET 10 SDK (dotnet)")
if [ ${#missing[@]} -gt 0 ]; then
  echo "benchmarks/shared/run.sh cannot run; missing:" >&2
  printf '  - %s\n' "${missing[@]}" >&2
  exit 1
fi

mkdir -p "$RESULTS/logs"
RESULTS=$(cd "$RESULTS" && pwd)
work=$(mktemp -d)
chmod 755 "$work"
pids=()
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  as_pg "$pg_bin/pg_ctl" -D "$work/pg" -m immediate -w stop >/dev/null 2>&1 || true
  cp "$work"/*.stderr "$work/pglog/pg.log" "$RESULTS/logs/" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
: >"$RESULTS/raw.txt"
: >"$RESULTS/commands.txt"
say() { echo "$*" | tee -a "$RESULTS/run.log"; }
show() { echo "$*" >>"$RESULTS/commands.txt"; }
load() { cut -d' ' -f1-3 /proc/loadavg; }

say "# $(date -u +%Y-%m-%dT%H:%M:%SZ) MiniQueue shared-mode benchmark, results in $RESULTS"
say "# commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo ' (with local changes)'), PostgreSQL $("$pg_bin/postgres" --version | awk '{print $3}'), $(nproc) cores"

# ---------------------------------------------------------------------------------------------------------------------
# The database: a throwaway cluster with its defaults (fsync, synchronous_commit on) and room for the connections.
mkdir -p "$work/pg" "$work/pgsock" "$work/pglog"
[ "$(id -u)" = 0 ] && chown postgres "$work/pg" "$work/pgsock" "$work/pglog"
as_pg "$pg_bin/initdb" -D "$work/pg" -A trust -U postgres -E UTF8 >/dev/null
pg_opts="-p $PG_PORT -k $work/pgsock -c listen_addresses=127.0.0.1 -c max_connections=300 -c shared_buffers=128MB"
show "initdb -D PG -A trust -U postgres -E UTF8; pg_ctl -D PG -o \"$pg_opts\" start"
as_pg "$pg_bin/pg_ctl" -D "$work/pg" -l "$work/pglog/pg.log" -o "$pg_opts" -w start >/dev/null
psql() { "$pg_bin/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -X -q -v ON_ERROR_STOP=1 "$@"; }
psql -d postgres -c "CREATE DATABASE mq"
psql -d mq -c "CREATE TABLE q (id bigserial PRIMARY KEY, body bytea NOT NULL)"
printf '%s\n' "INSERT INTO q (body) VALUES ('\\x78787878787878787878');" >"$work/ins.sql"
printf '%s\n' "DELETE FROM q WHERE id = (SELECT id FROM q ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING body;" >"$work/del.sql"
connection="Host=127.0.0.1;Port=$PG_PORT;Username=postgres;Database=mq"

# ---------------------------------------------------------------------------------------------------------------------
# The host as users publish it, the .NET load generator, one certificate.
show dotnet publish MiniQueue.Host -c Release -o HOST
dotnet publish MiniQueue.Host -c Release -o "$work/host" -v quiet -nologo >"$work/build.log" 2>&1 || { cat "$work/build.log" >&2; exit 1; }
show dotnet build benchmarks/MiniQueue.HttpBench -c Release
dotnet build benchmarks/MiniQueue.HttpBench -c Release -v quiet -nologo >"$work/build.log" 2>&1 || { cat "$work/build.log" >&2; exit 1; }
bench=(dotnet "$repo/benchmarks/MiniQueue.HttpBench/bin/Release/net10.0/MiniQueue.HttpBench.dll")
cert="$work/cert.pem"
key="$work/key.pem"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 7 -subj /CN=localhost \
  -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" -keyout "$key" -out "$cert" 2>/dev/null
head -c 10 /dev/zero | tr '\0' x >"$work/body10"
head -c 100 /dev/zero | tr '\0' x >"$work/body100"

declare -A port
next_port=$BASE_PORT
start_host() { # name
  local name=$1
  port[$name]=$next_port
  next_port=$((next_port + 1))
  local cmd=("$work/host/MiniQueue.Host" -port "${port[$name]}" -postgres "$connection" -cert "$cert" -key "$key")
  show "${cmd[*]}"
  "${cmd[@]}" >"$work/$name.stdout" 2>"$work/$name.stderr" &
  pids+=("$!")
  for _ in $(seq 1 300); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' --cacert "$cert" "https://127.0.0.1:${port[$name]}/healthz" 2>/dev/null)" = 200 ] && return 0
    sleep 0.1
  done
  echo "host $name did not start:" >&2; tail -20 "$work/$name.stderr" >&2; exit 1
}
start_host a
start_host b
url() { echo "https://127.0.0.1:${port[$1]}"; }

fresh() { # empties and vacuums both queues' tables, so that no load pays for the previous one's dead rows
  psql -d mq -c "TRUNCATE q; TRUNCATE miniqueue_messages;" -c "VACUUM ANALYZE q" -c "VACUUM ANALYZE miniqueue_messages"
}
h2rate() { awk '/^finished in/ {gsub(",", "", $4); print $4}' "$1"; }
pgrate() { awk '/^tps = / {print $3}' "$1"; }
benchrate() { sed -n 's/.*RESULT .* rate=\([0-9.]*\).*/\1/p' "$1"; }
record() { # round load value
  echo "round=$1 load=$2 value=$3 loadavg=$(load)" >>"$RESULTS/raw.txt"
  say "round $1: $2 = $3   (load average $(load))"
}
fill() { # host count topic: publishes count 100-byte messages
  h2load -n "$2" -c 12 -m 100 -d "$work/body100" "$(url "$1")/publish/$3" >"$work/fill.out" 2>&1 \
    || { cat "$work/fill.out" >&2; exit 1; }
  grep -q " 0 4xx, 0 5xx" "$work/fill.out" || { cat "$work/fill.out" >&2; exit 1; }
}
consume() { # host out seconds max
  "${bench[@]}" consume --url "$(url "$1")" --trust "$cert" --streams 12 --connections 4 --seconds "$3" --warmup 1 \
    --topic bench-consume --max-messages "$4" >"$2" 2>&1
}

run_load() { # round name
  local r=$1 name=$2 out="$work/$2.out"
  fresh
  case "$name" in
    pg-pub)
      show "pgbench -h 127.0.0.1 -p PORT -U postgres -n -c 64 -j 2 -T $DURATION -f ins.sql mq"
      "$pg_bin/pgbench" -h 127.0.0.1 -p "$PG_PORT" -U postgres -n -c 64 -j 2 -T "$DURATION" -f "$work/ins.sql" mq >"$out" 2>&1
      record "$r" "$name" "$(pgrate "$out")" ;;
    pub)
      show "h2load -c 8 -m 8 -D $DURATION -d body10 https://127.0.0.1:PORT/publish/bench"
      h2load -c 8 -m 8 -D "$DURATION" -d "$work/body10" "$(url a)/publish/bench" >"$out" 2>&1
      record "$r" "$name" "$(h2rate "$out")" ;;
    pub2)
      show "h2load -c 8 -m 8 -D $DURATION -d body10 https://127.0.0.1:PORT_A/publish/bench & the same on PORT_B"
      h2load -c 8 -m 8 -D "$DURATION" -d "$work/body10" "$(url a)/publish/bench" >"$out.a" 2>&1 &
      local other=$!
      h2load -c 8 -m 8 -D "$DURATION" -d "$work/body10" "$(url b)/publish/bench" >"$out.b" 2>&1
      wait "$other"
      record "$r" "$name" "$(awk -v a="$(h2rate "$out.a")" -v b="$(h2rate "$out.b")" 'BEGIN {printf "%.2f", a + b}')" ;;
    pg-cons)
      psql -d mq -c "INSERT INTO q (body) SELECT '\\x78787878787878787878' FROM generate_series(1, $PREFILL)" -c "VACUUM ANALYZE q"
      show "pgbench -h 127.0.0.1 -p PORT -U postgres -n -c 12 -j 2 -T $DURATION -f del.sql mq   (q holds $PREFILL rows)"
      "$pg_bin/pgbench" -h 127.0.0.1 -p "$PG_PORT" -U postgres -n -c 12 -j 2 -T "$DURATION" -f "$work/del.sql" mq >"$out" 2>&1
      local left
      left=$(psql -d mq -At -c "SELECT count(*) FROM q")
      [ "$left" -gt 0 ] || say "PROBLEM: round $r pg-cons emptied q (its rate counts empty DELETEs): raise PREFILL"
      record "$r" "$name" "$(pgrate "$out")" ;;
    cons)
      fill a "$PREFILL" bench-consume
      psql -d mq -c "VACUUM ANALYZE miniqueue_messages"
      show "MiniQueue.HttpBench consume --url https://127.0.0.1:PORT/ --trust cert.pem --streams 12 --connections 4 --seconds $DURATION --warmup 1 --topic bench-consume --max-messages $((PREFILL * 9 / 10))"
      consume a "$out" "$DURATION" $((PREFILL * 9 / 10))
      record "$r" "$name" "$(benchrate "$out")" ;;
    cons2)
      fill a "$PREFILL" bench-consume
      fill b "$PREFILL" bench-consume
      psql -d mq -c "VACUUM ANALYZE miniqueue_messages"
      show "the same consume against each of two hosts at once, topic filled with $((2 * PREFILL))"
      consume a "$out.a" "$DURATION" $((PREFILL * 9 / 10)) &
      local other=$!
      consume b "$out.b" "$DURATION" $((PREFILL * 9 / 10))
      wait "$other"
      record "$r" "$name" "$(awk -v a="$(benchrate "$out.a")" -v b="$(benchrate "$out.b")" 'BEGIN {printf "%.2f", a + b}')" ;;
  esac
  cat "$out"* >>"$RESULTS/logs/loads.txt"
}

# ---------------------------------------------------------------------------------------------------------------------
if [ "$BLOAT" -gt 0 ]; then
  say "# bloat run: $BLOAT s, publishing $RATE/s (HttpBench publish --rate) and consuming with 12 streams through one host"
  fresh
  size() {
    psql -d mq -At -F ' ' -c "SELECT pg_total_relation_size('miniqueue_messages'), pg_relation_size('miniqueue_messages'),
      n_live_tup, n_dead_tup, autovacuum_count FROM pg_stat_user_tables WHERE relname = 'miniqueue_messages'"
  }
  "${bench[@]}" publish --url "$(url a)" --trust "$cert" --connections 2 --streams 8 --seconds "$BLOAT" --warmup 0 \
    --size 100 --topic bench-bloat --rate "$RATE" >"$work/bloat-pub.out" 2>&1 &
  publisher=$!
  "${bench[@]}" consume --url "$(url a)" --trust "$cert" --streams 12 --connections 4 --seconds "$BLOAT" --warmup 0 \
    --topic bench-bloat >"$work/bloat-cons.out" 2>&1 &
  consumer=$!
  show "HttpBench publish --connections 2 --streams 8 --seconds $BLOAT --size 100 --rate $RATE & HttpBench consume --streams 12 --connections 4 --seconds $BLOAT"
  say "seconds total_bytes heap_bytes live_rows dead_rows autovacuums queued loadavg"
  started=$(date +%s)
  while kill -0 "$publisher" 2>/dev/null; do
    now=$(( $(date +%s) - started ))
    queued=$(psql -d mq -At -c "SELECT count(*) FROM miniqueue_messages WHERE topic = 'bench-bloat'")
    line="$now $(size) $queued $(load | cut -d' ' -f1)"
    say "$line"
    echo "bloat $line" >>"$RESULTS/raw.txt"
    sleep 30
  done
  wait "$publisher" "$consumer" || true
  cat "$work/bloat-pub.out" "$work/bloat-cons.out" | tee -a "$RESULTS/run.log"
  exit 0
fi

loads=(pg-pub pub pub2 pg-cons cons cons2)
for r in $(seq 1 "$ROUNDS"); do
  order=("${loads[@]}")
  if [ $((r % 2)) = 0 ]; then order=(pub2 pub pg-pub cons2 cons pg-cons); fi
  for name in "${order[@]}"; do run_load "$r" "$name"; done
done

fresh
show "MiniQueue.HttpBench handoff --publish-url https://127.0.0.1:PORT_A/ --consume-url https://127.0.0.1:PORT_B/ --trust cert.pem --count 1000"
for r in 1 2 3; do
  "${bench[@]}" handoff --publish-url "$(url a)" --consume-url "$(url b)" --trust "$cert" --count 1000 >"$work/handoff.out" 2>&1
  line=$(grep RESULT "$work/handoff.out" || tail -3 "$work/handoff.out")
  echo "handoff round=$r $line loadavg=$(load)" >>"$RESULTS/raw.txt"
  say "handoff round $r: $line   (load average $(load))"
done

# ---------------------------------------------------------------------------------------------------------------------
say ""
say "| load | median (min-max) | per round |"
say "|---|---|---|"
for name in "${loads[@]}"; do
  values=$(awk -v n="$name" '$2 == "load=" n {sub("value=", "", $3); print $3}' "$RESULTS/raw.txt")
  say "| $name | $(echo "$values" | sort -g | awk '{v[NR]=$1} END {printf "%.0f (%.0f-%.0f)", v[int((NR+1)/2)], v[1], v[NR]}') | $(echo "$values" | awk '{printf "%s%.0f", (NR>1?" / ":""), $1}') |"
done
ratio() { # a b: per-round ratios a/b
  paste <(awk -v n="$1" '$2 == "load=" n {sub("value=", "", $3); print $3}' "$RESULTS/raw.txt") \
        <(awk -v n="$2" '$2 == "load=" n {sub("value=", "", $3); print $3}' "$RESULTS/raw.txt") |
    awk '{printf "%s%.2f", (NR>1?" / ":""), $1/$2}'
}
say ""
say "pub / pg-pub per round: $(ratio pub pg-pub)"
say "cons / pg-cons per round: $(ratio cons pg-cons)"
say "pub2 / pub per round: $(ratio pub2 pub)"
say "cons2 / cons per round: $(ratio cons2 cons)"
