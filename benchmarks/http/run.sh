#!/usr/bin/env bash
# HTTP/2 benchmarks of MiniQueue.Http against a bare Kestrel ceiling measured in the same run.
#
#   benchmarks/http/run.sh            # ROUNDS=5 DURATION=10 WARMUP=2 (seconds) by default
#   ROUNDS=1 DURATION=5 benchmarks/http/run.sh
#
# Starts two servers on loopback with the same Kestrel, TLS (self-signed) and HTTP/2 settings:
#   miniqueue  AddMiniQueue + MapMiniQueue (in memory); a fresh process for each round's publish runs, and another,
#              its consume topic prefilled with PREFILL 100-byte messages, for the consume runs
#   bare       publish route reads the body and answers 201; subscribe route answers every command line with one
#              fixed 100-byte message line and a flush
# then measures, alternating the two servers in each round:
#   publish    h2load -c 12 -m 10 (12 connections x 10 streams), 100-byte bodies          -> req/s (the target)
#              (and, for information, against a third server that purges the topic every 50 ms, so it stays short)
#   publish    MiniQueue.HttpBench publish, MiniQueueClient, 12 connections x 10 publishers -> msg/s, latency percentiles
#   consume    MiniQueue.HttpBench consume, MiniQueueClient, receive+ACK on 1 stream / 12 streams over 4 connections
# The order of the servers alternates from round to round. It prints the median of the rounds, and the median of the
# per-round ratios miniqueue/bare (a neighbour's load hits both sides of a ratio alike).
# Needs h2load (Debian: apt-get install -y nghttp2-client).
set -euo pipefail
cd "$(dirname "$0")/../.."

ROUNDS=${ROUNDS:-5}
SECONDS_PER_RUN=${DURATION:-10}
WARMUP=${WARMUP:-2}
MQ_PORT=${MQ_PORT:-18443}
BARE_PORT=${BARE_PORT:-18444}
DRAINED_PORT=${DRAINED_PORT:-18445}
PREFILL=${PREFILL:-3000000}

command -v h2load >/dev/null || { echo "h2load is missing: apt-get update && apt-get install -y nghttp2-client" >&2; exit 1; }

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "# building (Release)"
dotnet build benchmarks/MiniQueue.HttpBench -c Release -v quiet -nologo >/dev/null
bench=(dotnet benchmarks/MiniQueue.HttpBench/bin/Release/net10.0/MiniQueue.HttpBench.dll)

start_server() { # name mode port extra...
  local name=$1 mode=$2 port=$3; shift 3
  "${bench[@]}" serve --mode "$mode" --port "$port" --cert-out "$work/$name.cer" "$@" >"$work/$name.log" 2>&1 &
  server_pid=$!
  pids+=("$server_pid")
  for _ in $(seq 1 600); do
    grep -q '^ready' "$work/$name.log" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "server $name did not start:" >&2; cat "$work/$name.log" >&2; exit 1
}

stop_server() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

start_server bare bare "$BARE_PORT"
head -c 100 /dev/zero >"$work/payload"
port_of() {
  case "$1" in
    miniqueue) echo "$MQ_PORT" ;;
    drained) echo "$DRAINED_PORT" ;;
    *) echo "$BARE_PORT" ;;
  esac
}
order() { if [ $(($1 % 2)) = 1 ]; then echo "$2"; else echo "$2" | tr ' ' '\n' | tac | tr '\n' ' '; fi; }

echo "# machine: $(nproc) cores, load average: $(cut -d' ' -f1-3 /proc/loadavg)"
results="$work/results"
: >"$results"
for round in $(seq 1 "$ROUNDS"); do
  # Publish: a MiniQueue process of its own, empty at the start of the round.
  start_server miniqueue miniqueue "$MQ_PORT"
  mq_pid=$server_pid
  start_server drained miniqueue "$DRAINED_PORT" --drain bench-publish
  drained_pid=$server_pid
  # Untimed warm-up of every server, so that tiered JIT has settled before anything is measured.
  for server in bare miniqueue drained; do
    h2load -c 12 -m 10 -D 3 -d "$work/payload" "https://127.0.0.1:$(port_of $server)/publish/warm-up" >/dev/null 2>&1
  done
  for server in $(order "$round" "bare miniqueue drained"); do
    port=$(port_of $server)
    cmd=(h2load -c 12 -m 10 -D "$SECONDS_PER_RUN" --warm-up-time "$WARMUP" -d "$work/payload" "https://127.0.0.1:$port/publish/bench-publish")
    [ "$round" = 1 ] && echo "\$ ${cmd[*]}"
    out=$("${cmd[@]}" 2>&1)
    rate=$(echo "$out" | sed -n 's/^finished in [0-9.]*s, \([0-9.]*\) req\/s.*/\1/p')
    ok=$(echo "$out" | sed -n 's/^status codes: \([0-9]*\) 2xx.*/\1/p')
    failed=$(echo "$out" | sed -n 's/^requests: .* \([0-9]*\) failed.*/\1/p')
    mean=$(echo "$out" | awk '/^time for request:/ {print $6}')
    max=$(echo "$out" | awk '/^time for request:/ {print $5}')
    echo "h2load-publish $server rate=$rate ok=$ok failed=$failed mean=$mean max=$max" >>"$results"
  done
  for server in $(order "$round" "bare miniqueue"); do
    port=$(port_of $server)
    cmd=("${bench[@]}" publish --url "https://127.0.0.1:$port" --trust "$work/$server.cer" --connections 12 --streams 10
         --seconds "$SECONDS_PER_RUN" --warmup "$WARMUP" --name "client-publish $server")
    [ "$round" = 1 ] && echo "\$ ${cmd[*]}"
    "${cmd[@]}" | sed -n 's/^RESULT //p' >>"$results"
  done
  stop_server "$mq_pid"
  stop_server "$drained_pid"

  # Consume: a MiniQueue process whose topic holds enough messages for the round.
  start_server miniqueue miniqueue "$MQ_PORT" --prefill "$PREFILL" --size 100 --topic bench
  mq_pid=$server_pid
  for server in bare miniqueue; do
    "${bench[@]}" consume --url "https://127.0.0.1:$(port_of $server)" --trust "$work/$server.cer" --streams 12 --connections 4 \
      --seconds 2 --warmup 1 --topic bench --name warm-up >/dev/null
  done
  for shape in "1 1" "12 4"; do
    set -- $shape
    for server in $(order "$round" "bare miniqueue"); do
      port=$(port_of $server)
      cmd=("${bench[@]}" consume --url "https://127.0.0.1:$port" --trust "$work/$server.cer" --streams "$1" --connections "$2"
           --seconds "$SECONDS_PER_RUN" --warmup "$WARMUP" --topic bench --name "consume-$1x$2 $server")
      [ "$round" = 1 ] && echo "\$ ${cmd[*]}"
      "${cmd[@]}" | sed -n 's/^RESULT //p' >>"$results"
    done
  done
  stop_server "$mq_pid"
  echo "# round $round done; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
done

echo
echo "raw results (one line per run):"
sed 's/^/  /' "$results"
echo
python3 - "$results" <<'PY'
import re, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    m = re.match(r'(\S+) (bare|miniqueue|drained) (.*)', line.strip())
    if not m:
        continue
    fields = dict(kv.split('=', 1) for kv in m.group(3).split())
    rows.setdefault(m.group(1), {}).setdefault(m.group(2), []).append(fields)
def num(value):
    if value in (None, '', 'NaN'):
        return float('nan')
    for unit, scale in (('us', 1), ('ms', 1000), ('s', 1000000)):
        if value.endswith(unit):
            return float(value[:-len(unit)]) * scale
    return float(value)
def med(runs, key):
    values = [num(r.get(key)) for r in runs]
    values = [v for v in values if v == v]
    return statistics.median(values) if values else float('nan')
def ratio(mq, bare):
    values = [num(q['rate']) / num(b['rate']) for q, b in zip(mq, bare)]
    return statistics.median(values), min(values), max(values)
print("| benchmark | bare (ceiling) msg/s | MiniQueue msg/s | ratio (median, min-max of rounds) | MiniQueue latency | bare latency |")
print("|---|---|---|---|---|---|")
titles = [
    ('h2load-publish', 'miniqueue', 'publish, h2load, 12 conn x 10 streams'),
    ('h2load-publish', 'drained', 'publish, h2load, 12 x 10, topic purged every 50 ms (information)'),
    ('client-publish', 'miniqueue', 'publish, MiniQueueClient, 12 conn x 10'),
    ('consume-1x1', 'miniqueue', 'consume+ACK, MiniQueueClient, 1 stream'),
    ('consume-12x4', 'miniqueue', 'consume+ACK, MiniQueueClient, 12 streams / 4 conn'),
]
for key, side, title in titles:
    if key not in rows or side not in rows[key]:
        continue
    bare, mq = rows[key].get('bare', []), rows[key][side]
    r, lo, hi = ratio(mq, bare)
    if key == 'h2load-publish':
        lat = lambda runs: f"mean {med(runs, 'mean'):.0f} µs, max {med(runs, 'max'):.0f} µs"
    else:
        lat = lambda runs: f"p50 {med(runs, 'p50_us'):.0f} / p99 {med(runs, 'p99_us'):.0f} / p99.9 {med(runs, 'p999_us'):.0f} µs"
    print(f"| {title} | {med(bare, 'rate'):,.0f} | {med(mq, 'rate'):,.0f} | {r:.2f} ({lo:.2f}-{hi:.2f}) | {lat(mq)} | {lat(bare)} |")
PY
