#!/usr/bin/env bash
# HTTP/2 benchmark of MiniQueue as users run it: the published MiniQueue.Host with its default flags (durable, -commit
# fsync, metrics on, JSON logs at the default level, debug) apart from -port -db -cert -key, against a bare Kestrel
# ceiling with the same TLS and HTTP/2 settings, measured in the same round.
#
#   benchmarks/http/run.sh                        # ROUNDS=3 DURATION=8 WARMUP=2 SETTLE=30 PREFILL=300000
#   ROUNDS=1 DURATION=3 PREFILL=20000 benchmarks/http/run.sh     # a quick check that it works
#   PROFILE=1 benchmarks/http/run.sh              # or --profile: dotnet-trace and dotnet-counters of the host under load
#
# Servers, all on loopback, all serving one self-signed certificate made here with openssl (ECDSA P-256):
#   bare           MiniQueue.HttpBench serve --mode bare: publish reads the body and answers 201; subscribe answers each
#                  command line with one fixed 100-byte message line and a flush. The ceiling.
#   bare-fsync     MiniQueue.HttpBench serve --mode bare-fsync: the bare publish route answering only after a group
#                  commit (one write of what arrived and an fsync; two commits in flight): the ceiling of any server
#                  that answers a publish once it is on disk. Publish loads only              (CEILING=0 leaves it out)
#   host           MiniQueue.Host (dotnet publish -c Release, framework-dependent), default flags: durable, fsync.
#   host-interval  the same with -commit interval                                              (INTERVAL=0 leaves it out)
#   host-sf        the single-file MiniQueue.Host (-r linux-x64), default flags                 (SINGLEFILE=1 adds it)
#   host-aot       the Native AOT MiniQueue.Host (-r linux-x64 -p:PublishAot=true; needs gcc) (AOT=1 adds it)
#   inmem          MiniQueue.HttpBench serve --mode miniqueue: the in-memory engine, NOT the product (INMEMORY=0 leaves it out)
# Every round starts every server afresh (a host on a new, empty data directory), reads its memory 5 s after it
# answers, warms each up untimed (h2load, 2 s), then runs each load against each server, one after the other, in an
# order that alternates from round to round:
#   pub10   h2load -c 12 -m 10, 10-byte bodies, DURATION s after WARMUP s              -> req/s
#   pub1k   the same with 1 KiB bodies                                                  -> req/s
#   lat     h2load -c 1 -m 1 (one stream), 10-byte bodies, --log-file                   -> p50 / p99 of the requests
#   then every server is loaded SETTLE s more (h2load -c 12 -m 10, 10-byte bodies, untimed; its topic purged after),
#   and pub10, pub1k and lat run again as the rows "... after SETTLE s of load" (SETTLE=0 leaves them out): on a
#   2-core machine the runtime's tiered JIT is still compiling for 20-30 s of load after start, so the first rows are
#   a server's first minute, these its steady state
#   cons1   MiniQueue.HttpBench consume (MiniQueueClient), receive+ACK, 1 stream        -> msg/s
#   cons12  the same, 12 streams over 4 connections                                     -> msg/s
# While the publish loads run, the RSS of every server is sampled (every 0.2 s). Before the consume loads the publish
# topics are purged; before each consume shape, every MiniQueue server's topic bench-consume is filled (topped up) to
# PREFILL (300,000) 100-byte messages (h2load -n N -c 12 -m 100), and each consume run against it ends early once it
# has consumed 90 % of them (warm-up included; --max-messages), so no run measures an empty topic; a run that ends
# before DURATION / 2 s is reported (raise PREFILL). The count is checked on the hosts' /metrics
# (miniqueue_messages_ready) before and after every run.
# The table gives, per row, the median of the rounds and the median (min-max) of the per-round ratios to bare.
# (The bare and in-memory servers have no /healthz: their 5 s count from the line they print once listening.)
# Results, the exact commands, the servers' logs' sizes and warnings: RESULTS (default artifacts/bench-http/<time>).
#
# PROFILE=1 (or --profile): one host (PROFILE_COMMIT=fsync or interval), default flags, under one of the loads above
# (PROFILE_LOAD=pub10, pub1k, lat, cons1 or cons12), recorded for PROFILE_SECONDS (10) s by, one after the other, each
# under a fresh run of the load:
#   dotnet-trace collect --profile TRACE_PROFILE (default dotnet-sampled-thread-time,dotnet-common: managed stacks
#     sampled ~100 Hz plus GC, JIT, thread-pool and exception events; in dotnet-trace 10 the name cpu-sampling belongs
#     to collect-linux)
#   dotnet-trace collect-linux --profile cpu-sampling (kernel CPU samples, native frames too; needs root and a recent
#     kernel; TRACE_CPU_SAMPLING=0 leaves it out)
#   dotnet-counters collect --counters COUNTERS (thread pool, GC, lock contention, Kestrel, MiniQueue), summarised
# and saves the .nettrace and .csv files in RESULTS.
#
# Needs h2load (apt-get install -y nghttp2-client), openssl, curl, python3 and the .NET SDK; the profile mode also
# needs dotnet-trace and dotnet-counters (dotnet tool install -g dotnet-trace / dotnet-counters). Installs nothing.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$(pwd)

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-8}
WARMUP=${WARMUP:-2}
SETTLE=${SETTLE:-30}
PREFILL=${PREFILL:-300000}
INTERVAL=${INTERVAL:-1}
INMEMORY=${INMEMORY:-1}
CEILING=${CEILING:-1}
SINGLEFILE=${SINGLEFILE:-0}
AOT=${AOT:-0}
PROFILE=${PROFILE:-0}
[ "${1:-}" = "--profile" ] && PROFILE=1
PROFILE_LOAD=${PROFILE_LOAD:-pub10}          # pub10, pub1k, lat, cons1 or cons12
PROFILE_COMMIT=${PROFILE_COMMIT:-fsync}      # fsync or interval
PROFILE_SECONDS=${PROFILE_SECONDS:-10}
TRACE_PROFILE=${TRACE_PROFILE:-dotnet-sampled-thread-time,dotnet-common}  # for dotnet-trace collect
TRACE_CPU_SAMPLING=${TRACE_CPU_SAMPLING:-1}  # also dotnet-trace collect-linux --profile cpu-sampling (kernel samples)
COUNTERS=${COUNTERS:-System.Runtime,Microsoft.AspNetCore.Hosting,Microsoft.AspNetCore.Server.Kestrel,MiniQueue}
BASE_PORT=${BASE_PORT:-18440}
RESULTS=${RESULTS:-artifacts/bench-http/$(date +%Y%m%d-%H%M%S)}

# ---------------------------------------------------------------------------------------------------------------------
# What is missing? Say it all at once, install nothing.
export PATH="$PATH:$HOME/.dotnet/tools"
missing=()
command -v h2load >/dev/null || missing+=("h2load (Debian/Ubuntu: apt-get install -y nghttp2-client)")
command -v openssl >/dev/null || missing+=("openssl (apt-get install -y openssl)")
command -v curl >/dev/null || missing+=("curl (apt-get install -y curl)")
command -v python3 >/dev/null || missing+=("python3 (apt-get install -y python3)")
command -v dotnet >/dev/null || missing+=("the .NET 10 SDK (dotnet)")
if [ "$PROFILE" = 1 ]; then
  command -v dotnet-trace >/dev/null || missing+=("dotnet-trace (dotnet tool install -g dotnet-trace)")
  command -v dotnet-counters >/dev/null || missing+=("dotnet-counters (dotnet tool install -g dotnet-counters)")
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "benchmarks/http/run.sh cannot run; missing:" >&2
  printf '  - %s\n' "${missing[@]}" >&2
  exit 1
fi

mkdir -p "$RESULTS/logs"
RESULTS=$(cd "$RESULTS" && pwd)
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
commands="$RESULTS/commands.txt"
results="$RESULTS/raw.txt"
: >"$commands"
: >"$results"
problems="$RESULTS/problems.txt"
: >"$problems"
say() { echo "$*" | tee -a "$RESULTS/run.log"; }
problem() { say "PROBLEM: $*"; echo "$*" >>"$problems"; }
show() { # prints a command the way it runs (first round only on the terminal, every time in commands.txt)
  echo "$*" >>"$commands"
  if [ "${round:-1}" = 1 ]; then say "\$ $*"; fi
}
load() { cut -d' ' -f1-3 /proc/loadavg; }

# ---------------------------------------------------------------------------------------------------------------------
# Build: the host as users publish it, and the bench tool (bare server, in-memory server, .NET load generators).
say "# $(date -u +%Y-%m-%dT%H:%M:%SZ) MiniQueue HTTP/2 benchmark, results in $RESULTS"
say "# commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo ' (with local changes)')"
host_dir="$work/host"
show dotnet publish MiniQueue.Host -c Release -o "$host_dir"
dotnet publish MiniQueue.Host -c Release -o "$host_dir" -v quiet -nologo >"$work/build.log" 2>&1 || { cat "$work/build.log" >&2; exit 1; }
publish_rid() { # server [publish options...]: the one-file builds, each into $work/<server>
  local name=$1; shift
  show dotnet publish MiniQueue.Host -c Release -r linux-x64 "$@" -o "$work/$name"
  dotnet publish MiniQueue.Host -c Release -r linux-x64 "$@" -o "$work/$name" -v quiet -nologo >"$work/build.log" 2>&1 || { cat "$work/build.log" >&2; exit 1; }
}
if [ "$PROFILE" != 1 ]; then
  [ "$SINGLEFILE" = 1 ] && publish_rid host-sf
  [ "$AOT" = 1 ] && publish_rid host-aot -p:PublishAot=true
fi
show dotnet build benchmarks/MiniQueue.HttpBench -c Release
dotnet build benchmarks/MiniQueue.HttpBench -c Release -v quiet -nologo >"$work/build.log" 2>&1 || { cat "$work/build.log" >&2; exit 1; }
bench=(dotnet "$repo/benchmarks/MiniQueue.HttpBench/bin/Release/net10.0/MiniQueue.HttpBench.dll")

# One certificate for every server.
cert="$RESULTS/cert.pem"
key="$work/key.pem"
show openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 7 -subj /CN=localhost \
  -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" -keyout "$key" -out "$cert"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 7 -subj /CN=localhost \
  -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" -keyout "$key" -out "$cert" 2>/dev/null

head -c 10 /dev/zero >"$work/body10"
head -c 1024 /dev/zero >"$work/body1k"
head -c 100 /dev/zero >"$work/body100"

# ---------------------------------------------------------------------------------------------------------------------
# Servers.
declare -A port kind pid_of label
next_port=$BASE_PORT
add_server() { port[$1]=$next_port; next_port=$((next_port + 1)); kind[$1]=$2; label[$1]=$3; }
servers=()
if [ "$PROFILE" = 1 ]; then
  add_server host host "MiniQueue.Host -commit $PROFILE_COMMIT"; servers=(host)
else
  add_server bare bare "bare Kestrel"; servers+=(bare)
  if [ "$CEILING" = 1 ]; then add_server bare-fsync ceiling "bare Kestrel + fsync group commit"; servers+=(bare-fsync); fi
  add_server host host "MiniQueue.Host (durable, fsync: the defaults)"; servers+=(host)
  if [ "$INTERVAL" = 1 ]; then add_server host-interval host "MiniQueue.Host -commit interval"; servers+=(host-interval); fi
  if [ "$SINGLEFILE" = 1 ]; then add_server host-sf host "MiniQueue.Host single file (-r linux-x64)"; servers+=(host-sf); fi
  if [ "$AOT" = 1 ]; then add_server host-aot host "MiniQueue.Host Native AOT (-r linux-x64 -p:PublishAot=true)"; servers+=(host-aot); fi
  if [ "$INMEMORY" = 1 ]; then add_server inmem inmem "in memory (HttpBench serve --mode miniqueue), not the product"; servers+=(inmem); fi
fi
queues=() # the servers that are a MiniQueue (not bare)
consumers=() # the servers the consume loads run against (not the durable ceiling, which only publishes)
for s in "${servers[@]}"; do
  case "${kind[$s]}" in bare) ;; ceiling) continue ;; *) queues+=("$s") ;; esac
  consumers+=("$s")
done

url() { echo "https://127.0.0.1:${port[$1]}"; }
mem() { # VmRSS, RssAnon, RssFile, VmHWM of a process, in kB
  awk '/^(VmRSS|RssAnon|RssFile|VmHWM):/ {sub(":", "", $1); v[$1]=$2}
       END {printf "rss_kb=%d anon_kb=%d file_kb=%d hwm_kb=%d", v["VmRSS"], v["RssAnon"], v["RssFile"], v["VmHWM"]}' "/proc/$1/status"
}

start_server() { # name round
  local name=$1 round=$2 cmd
  local db="$work/db-$name" log="$work/$name.stderr"
  rm -rf "$db"
  case "${kind[$name]}" in
    host)
      local exe="$host_dir/MiniQueue.Host"
      case "$name" in host-sf | host-aot) exe="$work/$name/MiniQueue.Host" ;; esac
      cmd=("$exe" -port "${port[$name]}" -db "$db" -cert "$cert" -key "$key")
      [ "$name" = host-interval ] && cmd+=(-commit interval)
      [ "$PROFILE" = 1 ] && [ "$PROFILE_COMMIT" = interval ] && cmd+=(-commit interval)
      ;;
    bare) cmd=("${bench[@]}" serve --mode bare --port "${port[$name]}" --cert "$cert" --key "$key") ;;
    ceiling) cmd=("${bench[@]}" serve --mode bare-fsync --db "$db" --port "${port[$name]}" --cert "$cert" --key "$key") ;;
    inmem) cmd=("${bench[@]}" serve --mode miniqueue --port "${port[$name]}" --cert "$cert" --key "$key") ;;
  esac
  show "${cmd[*]} >$name.stdout 2>$name.stderr"
  "${cmd[@]}" >"$work/$name.stdout" 2>"$log" &
  pid_of[$name]=$!
  pids+=("$!")
  local ready=0
  for _ in $(seq 1 600); do
    if [ "${kind[$name]}" = host ]; then
      [ "$(curl -s -o /dev/null -w '%{http_code}' --cacert "$cert" "$(url "$name")/healthz" 2>/dev/null)" = 200 ] && { ready=1; break; }
    else
      grep -q '^ready' "$work/$name.stdout" 2>/dev/null && { ready=1; break; }
    fi
    kill -0 "${pid_of[$name]}" 2>/dev/null || break
    sleep 0.1
  done
  if [ "$ready" != 1 ]; then
    echo "server $name did not start:" >&2; tail -20 "$work/$name.stdout" "$log" >&2; exit 1
  fi
  # Idle memory, 5 s after it answers (read in the background while the next server starts).
  local p=${pid_of[$name]}
  ( sleep 5; echo "mem-idle $name round=$round $(mem "$p")" >"$work/idle-$name" ) &
  idle_readers+=("$!")
}

stop_server() { # name round: stops it, keeps the size of its log and its warnings and errors, removes its data
  local name=$1 round=$2 p=${pid_of[$1]}
  local db="$work/db-$name" log="$work/$name.stderr"
  local db_bytes=0
  [ -d "$db" ] && db_bytes=$(du -sb "$db" | cut -f1)
  kill "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
  local lines bytes levels
  lines=$(wc -l <"$log"); bytes=$(stat -c %s "$log")
  levels=$(grep -o '"LogLevel":"[A-Za-z]*"' "$log" | sort | uniq -c | awk '{gsub(/"LogLevel":|"/, "", $2); printf "%s%s=%d", sep, tolower($2), $1; sep=" "}' || true)
  echo "log $name round=$round lines=$lines bytes=$bytes db_bytes=$db_bytes ${levels:-}" >>"$results"
  local kept="$RESULTS/logs/$name-round$round.stderr"
  { head -5 "$log"; echo "... the first debug lines:"; grep '"LogLevel":"Debug"' "$log" | head -20
    echo "... warnings and errors (at most 200):"; grep -E '"LogLevel":"(Warning|Error|Critical)"' "$log" | head -200
    echo "... the last lines:"; tail -5 "$log"; } >"$kept" || true
  if [ "${kind[$name]}" != host ]; then cp "$log" "$kept"; fi
  local bad
  bad=$(grep -cE '"LogLevel":"(Warning|Error|Critical)"' "$log" || true)
  [ "${bad:-0}" -gt 0 ] && problem "$name round $round logged $bad warnings or errors (see logs/$name-round$round.stderr)"
  rm -rf "$db" "$log"
}

# RSS sampled every 0.2 s while the publish loads run (the sampler keeps the maximum in a file).
sampler() { # pid file
  local max=0 key value _
  while [ -e "/proc/$1/status" ]; do
    while read -r key value _; do
      if [ "$key" = VmRSS: ]; then [ "$value" -gt "$max" ] && max=$value; break; fi
    done 2>/dev/null <"/proc/$1/status" || break
    # Written aside and renamed: a sampler killed in the middle of a write must not leave the file empty.
    echo "$max" >"$2.new" && mv -f "$2.new" "$2"
    sleep 0.2
  done
}

h2load_fields() { # h2load output -> rate ok failed errored timeout s3xx s4xx s5xx mean max
  python3 -c '
import re, sys
out = sys.stdin.read()
def find(pattern, default="nan"):
    m = re.search(pattern, out, re.M)
    return m.groups() if m else None
rate = find(r"^finished in [0-9.]+\w+, ([0-9.]+) req/s")
req = find(r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout")
codes = find(r"^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx")
times = find(r"^time for request:\s+(\S+)\s+(\S+)\s+(\S+)")
fields = {"rate": rate[0] if rate else "nan"}
if req: fields.update(total=req[0], failed=req[4], errored=req[5], timeout=req[6])
if codes: fields.update(ok=codes[0], s3xx=codes[1], s4xx=codes[2], s5xx=codes[3])
if times: fields.update(min=times[0], max=times[1], mean=times[2])
print(" ".join(f"{k}={v}" for k, v in fields.items()))
'
}

cpu_ticks() { # pid -> its user + system CPU time so far, in clock ticks (fields 14 and 15 of /proc/PID/stat)
  awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo nan
}

cpu_per_request() { # ticks-before ticks-after h2load-fields -> cpu_us=N: the server's CPU microseconds per request
  local rate
  rate=$(echo "$3" | tr ' ' '\n' | sed -n 's/^rate=//p')
  python3 -c '
import sys
try:
    before, after, rate, duration, hz = (float(x) for x in sys.argv[1:])
    print(f"cpu_us={(after - before) / hz * 1e6 / (rate * duration):.1f}" if rate > 0 and after >= before else "cpu_us=nan")
except ValueError:
    print("cpu_us=nan")
' "$1" "$2" "$rate" "$DURATION" "$(getconf CLK_TCK)"
}

latency_fields() { # h2load --log-file -> p50_us p99_us of the requests in it
  python3 -c '
import math, sys
d = sorted(int(line.split()[2]) for line in open(sys.argv[1]) if line.strip())
q = lambda p: d[min(len(d) - 1, max(0, math.ceil(len(d) * p / 100) - 1))] if d else float("nan")
print(f"n={len(d)} p50_us={q(50)} p90_us={q(90)} p99_us={q(99)} p999_us={q(99.9)}")
' "$1"
}

check_h2load() { # what fields
  local what=$1 fields=$2 f
  for f in failed errored timeout s3xx s4xx s5xx; do
    local v
    v=$(echo "$fields" | tr ' ' '\n' | sed -n "s/^$f=//p")
    [ -n "$v" ] && [ "$v" != 0 ] && problem "$what: $f=$v"
  done
  return 0
}

run_h2load() { # row server round body conns streams [--log-file]
  local row=$1 name=$2 round=$3 body=$4 c=$5 m=$6 out fields
  local cmd=(h2load -c "$c" -m "$m" -D "$DURATION" --warm-up-time "$WARMUP" -d "$work/$body")
  [ "${row%-settled}" = lat ] && cmd+=(--log-file "$work/latency.log")
  cmd+=("$(url "$name")/publish/bench-publish")
  rm -f "$work/latency.log" # h2load appends to it
  show "${cmd[*]}"
  # The server's CPU time (user + system, all threads) over the timed part of the run: read WARMUP s after h2load
  # starts and again when it ends, divided by the requests of the timed part (rate x DURATION): cpu_us per request.
  local pid=${pid_of[$name]} before
  rm -f "$work/cpu-before"
  ( sleep "$WARMUP"; cpu_ticks "$pid" >"$work/cpu-before" ) &
  before=$!
  out=$("${cmd[@]}" 2>&1) || true
  local after
  after=$(cpu_ticks "$pid")
  wait "$before" 2>/dev/null || true
  { echo "### $row $name round $round: ${cmd[*]}"; echo "$out"; } >>"$RESULTS/h2load.txt"
  fields=$(echo "$out" | h2load_fields)
  fields="$fields $(cpu_per_request "$(cat "$work/cpu-before" 2>/dev/null)" "$after" "$fields")"
  [ "${row%-settled}" = lat ] && fields="$fields $(latency_fields "$work/latency.log")"
  echo "$row $name round=$round $fields" >>"$results"
  check_h2load "$row $name round $round" "$fields"
}

ready_count() { # server topic -> miniqueue_messages_ready of the topic on /metrics (hosts only)
  curl -s --cacert "$cert" "$(url "$1")/metrics" | awk -v t="$2" '$1 == "miniqueue_messages_ready{topic=\"" t "\"}" {print $2; found=1} END {if (!found) print 0}'
}

fill() { # server topic count purpose: publishes count 100-byte messages (untimed)
  local name=$1 topic=$2 n=$3 purpose=$4 c=12 out fields started elapsed
  [ "$n" -le 0 ] && return 0
  [ "$n" -lt "$c" ] && c=$n
  local cmd=(h2load -n "$n" -c "$c" -m 100 -d "$work/body100" "$(url "$name")/publish/$topic")
  show "${cmd[*]}"
  started=$(date +%s.%N)
  out=$("${cmd[@]}" 2>&1) || true
  { echo "### fill $name round $round: ${cmd[*]}"; echo "$out"; } >>"$RESULTS/h2load.txt"
  elapsed=$(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN {printf "%.2f", b - a}')
  fields=$(echo "$out" | h2load_fields)
  echo "fill $name round=$round purpose=$purpose n=$n seconds=$elapsed $fields" >>"$results"
  check_h2load "prefill of $name round $round" "$fields"
  printf '  filled %s/%s with %d messages in %.1f s (%s)\n' "$name" "$topic" "$n" "$elapsed" "$(echo "$fields" | cut -d' ' -f1)" | tee -a "$RESULTS/run.log"
}

check_ready() { # server topic expected: the hosts' /metrics must show the expected number of messages ready
  [ "${kind[$1]}" = host ] || return 0
  local ready
  ready=$(ready_count "$1" "$2")
  echo "ready $1 round=$round topic=$2 ready=$ready expected=$3" >>"$results"
  [ "$ready" = "$3" ] || problem "$1 round $round: $2 has $ready messages ready, expected $3"
}

declare -A queued # messages ready in each MiniQueue server's bench-consume

run_consume() { # row server round streams connections target
  local row=$1 name=$2 round=$3 streams=$4 conns=$5 target=$6 line
  local cmd=("${bench[@]}" consume --url "$(url "$name")" --trust "$cert" --streams "$streams" --connections "$conns"
             --seconds "$DURATION" --warmup "$WARMUP" --topic bench-consume --name "$row $name")
  # A MiniQueue server's run ends early once 90 % of its topic is consumed, so it never measures an empty topic.
  [ "${kind[$name]}" = bare ] || cmd+=(--max-messages $((target * 9 / 10)))
  show "${cmd[*]}"
  line=$("${cmd[@]}" 2>"$work/consume.err" | sed -n 's/^RESULT //p') || true
  if [ -z "$line" ]; then
    problem "$row $name round $round: the consume load failed: $(tail -3 "$work/consume.err" | tr '\n' ' ')"
    line="$row $name rate=nan received=0"
  fi
  echo "$line round=$round" | sed "s/^\($row $name\) \(.*\) round=$round$/\1 round=$round \2/" >>"$results"
  local received
  received=$(echo "$line" | sed -n 's/.*received=\([0-9]*\).*/\1/p')
  if [ "${kind[$name]}" != bare ]; then
    queued[$name]=$((${queued[$name]} - ${received:-0}))
    check_ready "$name" bench-consume "${queued[$name]}"
    if [ "${queued[$name]}" -le 0 ]; then
      problem "$row $name round $round drained its topic ($received of $target messages): the rate is understated; raise PREFILL"
    fi
    local measured
    measured=$(echo "$line" | sed -n 's/.* seconds=\([0-9.]*\).*/\1/p')
    if echo "$line" | grep -q 'capped=1' && awk -v m="${measured:-0}" -v d="$DURATION" 'BEGIN { exit !(m < d / 2) }'; then
      problem "$row $name round $round consumed 90 % of its $target messages after only ${measured:-0} s measured (of $DURATION): a short window; raise PREFILL for a longer one"
    fi
  fi
}

top_up() { # server target: fills bench-consume up to target messages and checks the count
  local name=$1 target=$2 purpose=top-up
  [ "${queued[$name]:-0}" = 0 ] && purpose=initial
  fill "$name" bench-consume $((target - ${queued[$name]:-0})) "$purpose"
  queued[$name]=$target
  check_ready "$name" bench-consume "$target"
}

order() { # round names...: as given in odd rounds, reversed in even ones
  local r=$1; shift
  if [ $((r % 2)) = 1 ]; then echo "$*"; else echo "$*" | tr ' ' '\n' | tac | tr '\n' ' '; fi
}

machine() {
  say "# machine: $(nproc) cores ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)), $(awk '/MemTotal/ {printf "%.1f GB", $2/1048576}' /proc/meminfo) RAM, $(uname -sr)"
  say "# .NET $(dotnet --version) SDK, runtime $(dotnet --list-runtimes | awk '/Microsoft.NETCore.App/ {v=$2} END {print v}'), $(h2load --version 2>&1 | head -1)"
  say "# host GC settings (runtimeconfig.json): $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["runtimeOptions"].get("configProperties", {}))' "$host_dir/MiniQueue.Host.runtimeconfig.json")"
  if [ "$PROFILE" = 1 ]; then
    say "# PROFILE_LOAD=$PROFILE_LOAD PROFILE_COMMIT=$PROFILE_COMMIT PROFILE_SECONDS=$PROFILE_SECONDS WARMUP=$WARMUP PREFILL=$PREFILL"
  else
    say "# ROUNDS=$ROUNDS DURATION=$DURATION WARMUP=$WARMUP SETTLE=$SETTLE PREFILL=$PREFILL INTERVAL=$INTERVAL CEILING=$CEILING SINGLEFILE=$SINGLEFILE AOT=$AOT INMEMORY=$INMEMORY"
  fi
}

# ---------------------------------------------------------------------------------------------------------------------
# Profile mode: the host under one benchmark load, recorded by dotnet-trace, then by dotnet-counters.
if [ "$PROFILE" = 1 ]; then
  machine
  round=1
  idle_readers=()
  start_server host 1
  wait "${idle_readers[@]}"; cat "$work/idle-host" >>"$results"
  case "$PROFILE_LOAD" in
    pub10) load_cmd=(h2load -c 12 -m 10 -d "$work/body10") ;;
    pub1k) load_cmd=(h2load -c 12 -m 10 -d "$work/body1k") ;;
    lat) load_cmd=(h2load -c 1 -m 1 -d "$work/body10") ;;
    cons1 | cons12) ;;
    *) echo "PROFILE_LOAD must be pub10, pub1k, lat, cons1 or cons12" >&2; exit 2 ;;
  esac
  seconds=$((PROFILE_SECONDS + WARMUP + 3))
  duration=$(printf '%02d:%02d:%02d:%02d' $((PROFILE_SECONDS / 86400)) $((PROFILE_SECONDS % 86400 / 3600)) $((PROFILE_SECONDS % 3600 / 60)) $((PROFILE_SECONDS % 60)))
  start_load() { # name: runs the load for $seconds in the background, output in $work/profile-load-$name
    local cmd
    case "$PROFILE_LOAD" in
      cons1) cmd=("${bench[@]}" consume --url "$(url host)" --trust "$cert" --streams 1 --connections 1 --seconds "$seconds" --warmup 0 --topic bench-consume --name "$PROFILE_LOAD host") ;;
      cons12) cmd=("${bench[@]}" consume --url "$(url host)" --trust "$cert" --streams 12 --connections 4 --seconds "$seconds" --warmup 0 --topic bench-consume --name "$PROFILE_LOAD host") ;;
      *) cmd=("${load_cmd[@]}" -D "$seconds" "$(url host)/publish/bench-publish") ;;
    esac
    show "${cmd[*]} &"
    "${cmd[@]}" >"$work/profile-load-$1" 2>&1 &
    load_pid=$!
    pids+=("$load_pid")
  }
  check_drained() { # name
    local received; received=$(sed -n 's/^RESULT .*received=\([0-9]*\).*/\1/p' "$work/profile-load-$1")
    [ "${received:-0}" -lt "$fill_target" ] || problem "the $1 load drained the topic ($received of $fill_target): raise PREFILL"
  }
  load_result() { # name
    if [ "${PROFILE_LOAD#cons}" != "$PROFILE_LOAD" ]; then
      sed -n 's/^RESULT //p' "$work/profile-load-$1"
    else
      echo "$PROFILE_LOAD host $(h2load_fields <"$work/profile-load-$1")"
    fi
  }
  fill_target=$PREFILL
  refill() { # tops bench-consume up to fill_target for the consume loads
    if [ "${PROFILE_LOAD#cons}" != "$PROFILE_LOAD" ]; then
      local ready; ready=$(ready_count host bench-consume)
      fill host bench-consume $((fill_target - ready)) top-up
      check_ready host bench-consume "$fill_target"
    fi
  }
  say "# warm-up (untimed)"
  refill
  if [ "${PROFILE_LOAD#cons}" = "$PROFILE_LOAD" ]; then
    h2load -c 12 -m 10 -D 3 -d "$work/body10" "$(url host)/publish/warm-up" >/dev/null 2>&1 || true
  else
    # The warm-up also tells how many messages a load of $seconds s needs: 1.5 x its rate x $seconds, at least PREFILL.
    streams=1 conns=1
    [ "$PROFILE_LOAD" = cons12 ] && streams=12 conns=4
    line=$("${bench[@]}" consume --url "$(url host)" --trust "$cert" --streams "$streams" --connections "$conns" --seconds 3 --warmup 1 \
      --topic bench-consume --name warm-up 2>/dev/null | sed -n 's/^RESULT //p') || true
    rate=$(echo "$line" | sed -n 's/.* rate=\([0-9]*\).*/\1/p')
    received=$(echo "$line" | sed -n 's/.* received=\([0-9]*\).*/\1/p')
    [ "${received:-0}" -lt "$fill_target" ] || problem "the warm-up drained the topic ($received of $fill_target), so its rate is understated: raise PREFILL"
    fill_target=$(awk -v r="${rate:-0}" -v s="$seconds" -v p="$PREFILL" 'BEGIN { n = int((1.5 * r * s + 9999) / 10000) * 10000; print (n > p ? n : p) }')
    say "  warm-up: ${rate:-?} msg/s, so the topic is filled to $fill_target before each recording"
    refill
  fi
  base="$RESULTS/host-$PROFILE_COMMIT-$PROFILE_LOAD"

  say "# dotnet-trace collect ($TRACE_PROFILE), ${PROFILE_SECONDS} s under the load; load average $(load)"
  start_load trace
  sleep "$WARMUP"
  show dotnet-trace collect -p "${pid_of[host]}" --profile "$TRACE_PROFILE" --duration "$duration" -o "$base.nettrace"
  dotnet-trace collect -p "${pid_of[host]}" --profile "$TRACE_PROFILE" --duration "$duration" -o "$base.nettrace" >"$work/trace.out" 2>&1 \
    || problem "dotnet-trace collect failed: $(tail -3 "$work/trace.out")"
  wait "$load_pid" || true
  echo "while dotnet-trace collect: $(load_result trace)" | tee -a "$results" "$RESULTS/run.log"
  check_drained trace

  if [ "$TRACE_CPU_SAMPLING" = 1 ]; then
    refill
    say "# dotnet-trace collect-linux --profile cpu-sampling, ${PROFILE_SECONDS} s under the load; load average $(load)"
    start_load cpu
    sleep "$WARMUP"
    show dotnet-trace collect-linux -p "${pid_of[host]}" --profile cpu-sampling --duration "$duration" -o "$base.cpu-sampling.nettrace"
    dotnet-trace collect-linux -p "${pid_of[host]}" --profile cpu-sampling --duration "$duration" -o "$base.cpu-sampling.nettrace" >"$work/trace.out" 2>&1 \
      || problem "dotnet-trace collect-linux failed (it needs root and a kernel with user_events; TRACE_CPU_SAMPLING=0 skips it): $(tail -3 "$work/trace.out")"
    wait "$load_pid" || true
    echo "while dotnet-trace collect-linux: $(load_result cpu)" | tee -a "$results" "$RESULTS/run.log"
  fi

  refill
  say "# dotnet-counters collect ($COUNTERS), ${PROFILE_SECONDS} s under the load; load average $(load)"
  start_load counters
  sleep "$WARMUP"
  show dotnet-counters collect -p "${pid_of[host]}" --counters "$COUNTERS" --format csv --duration "$duration" -o "$base.counters.csv"
  dotnet-counters collect -p "${pid_of[host]}" --counters "$COUNTERS" --format csv --duration "$duration" -o "$base.counters.csv" >"$work/counters.out" 2>&1 \
    || problem "dotnet-counters collect failed: $(tail -3 "$work/counters.out")"
  wait "$load_pid" || true
  echo "while dotnet-counters collect: $(load_result counters)" | tee -a "$results" "$RESULTS/run.log"
  check_drained counters
  echo "mem-after host $(mem "${pid_of[host]}")" | tee -a "$results" "$RESULTS/run.log"
  stop_server host 1
  if [ -s "$base.counters.csv" ]; then
    echo
    echo "counters during the load: min / mean / max of the samples (for a rate, '/ 1 sec', of an up-down counter such"
    echo "as the thread count, the change per second); series that stayed 0 are left out; all in the .csv"
    python3 - "$base.counters.csv" <<'PY' | tee -a "$RESULTS/run.log"
import csv, statistics, sys
series = {}
for row in csv.DictReader(open(sys.argv[1])):
    try:
        value = float(row["Mean/Increment"])
    except (KeyError, ValueError):
        continue
    series.setdefault((row["Provider"], row["Counter Name"]), []).append(value)
for (provider, name), values in sorted(series.items()):
    if any(values):
        print(f"  {provider}  {name}:  {min(values):,.6g} / {statistics.mean(values):,.6g} / {max(values):,.6g}")
PY
  fi
  echo
  echo "results in $RESULTS:"
  ls -la "$RESULTS" | sed 's/^/  /'
  echo "open a .nettrace in PerfView or Visual Studio, or: dotnet-trace convert --format Speedscope FILE (https://www.speedscope.app)"
  [ -s "$problems" ] && { echo; echo "problems:"; sed 's/^/  /' "$problems"; }
  exit 0
fi

# ---------------------------------------------------------------------------------------------------------------------
# The benchmark.
machine
started_all=$(date +%s)
for round in $(seq 1 "$ROUNDS"); do
  round_started=$(date +%s)
  say "# round $round of $ROUNDS: load average before: $(load)"
  echo "load round=$round when=before $(load | awk '{print "l1=" $1 " l5=" $2 " l15=" $3}')" >>"$results"
  idle_readers=()
  for s in "${servers[@]}"; do start_server "$s" "$round"; done
  wait "${idle_readers[@]}"
  for s in "${servers[@]}"; do cat "$work/idle-$s" >>"$results"; done

  # Untimed warm-up, so that tiered JIT has settled before anything is measured.
  for s in "${servers[@]}"; do
    h2load -c 12 -m 10 -D 2 -d "$work/body10" "$(url "$s")/publish/warm-up" >/dev/null 2>&1 || true
  done

  # Publish, with the RSS sampled.
  samplers=()
  for s in "${servers[@]}"; do echo 0 >"$work/peak-$s"; sampler "${pid_of[$s]}" "$work/peak-$s" & samplers+=("$!"); done
  for s in $(order "$round" "${servers[@]}"); do run_h2load pub10 "$s" "$round" body10 12 10; done
  for s in $(order "$round" "${servers[@]}"); do run_h2load pub1k "$s" "$round" body1k 12 10; done
  for s in $(order "$round" "${servers[@]}"); do run_h2load lat "$s" "$round" body10 1 1; done
  kill "${samplers[@]}" 2>/dev/null || true
  wait "${samplers[@]}" 2>/dev/null || true
  for s in "${servers[@]}"; do
    echo "mem-publish $s round=$round peak_rss_kb=$(cat "$work/peak-$s") $(mem "${pid_of[$s]}")" >>"$results"
  done

  # The same publish loads once more after SETTLE s of untimed load on every server: the steady state.
  if [ "$SETTLE" -gt 0 ]; then
    for s in "${servers[@]}"; do
      show "h2load -c 12 -m 10 -D $SETTLE -d $work/body10 $(url "$s")/publish/settle"
      h2load -c 12 -m 10 -D "$SETTLE" -d "$work/body10" "$(url "$s")/publish/settle" >/dev/null 2>&1 || true
    done
    for s in "${queues[@]}"; do curl -s -o /dev/null --cacert "$cert" -X DELETE "$(url "$s")/settle"; done
    for s in $(order "$round" "${servers[@]}"); do run_h2load pub10-settled "$s" "$round" body10 12 10; done
    for s in $(order "$round" "${servers[@]}"); do run_h2load pub1k-settled "$s" "$round" body1k 12 10; done
    for s in $(order "$round" "${servers[@]}"); do run_h2load lat-settled "$s" "$round" body10 1 1; done
  fi

  # Consume+ACK: the publish topics purged; before each shape, bench-consume on every MiniQueue server filled (topped
  # up) to PREFILL messages; each run stops once it has consumed 90 % of them.
  for s in "${queues[@]}"; do
    curl -s -o /dev/null --cacert "$cert" -X DELETE "$(url "$s")/bench-publish"
    curl -s -o /dev/null --cacert "$cert" -X DELETE "$(url "$s")/warm-up"
    queued[$s]=0
  done
  for shape in "cons1 1 1" "cons12 12 4"; do
    set -- $shape
    target=$PREFILL
    echo "consume-target $1 round=$round n=$target" >>"$results"
    for s in "${queues[@]}"; do top_up "$s" "$target"; done
    for s in $(order "$round" "${consumers[@]}"); do run_consume "$1" "$s" "$round" "$2" "$3" "$target"; done
  done

  for s in "${servers[@]}"; do stop_server "$s" "$round"; done
  say "# round $round done in $(($(date +%s) - round_started)) s; load average after: $(load)"
  echo "load round=$round when=after $(load | awk '{print "l1=" $1 " l5=" $2 " l15=" $3}')" >>"$results"
done

echo | tee -a "$RESULTS/run.log"
say "raw results (one line per run, also in $results):"
sed 's/^/  /' "$results" | tee -a "$RESULTS/run.log"
echo | tee -a "$RESULTS/run.log"
python3 - "$results" "$ROUNDS" "$DURATION" "$PREFILL" "$SETTLE" <<'PY' | tee "$RESULTS/table.md" | tee -a "$RESULTS/run.log"
import re, statistics, sys
path, rounds, duration, prefill, settle = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
runs = {}  # (row, server) -> {round: fields}
loads = {}
fills = []  # (server, fields), in order
for line in open(path):
    parts = line.split()
    if parts and parts[0] == "load":
        fields = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
        loads.setdefault(int(fields["round"]), {})[fields["when"]] = f"{fields['l1']} {fields['l5']} {fields['l15']}"
        continue
    if len(parts) < 3 or not parts[2].startswith("round="):
        continue
    row, server = parts[0], parts[1]
    fields = dict(p.split("=", 1) for p in parts[2:] if "=" in p)
    if row == "fill":
        fills.append((server, fields))
        continue
    runs.setdefault((row, server), {})[int(fields["round"])] = fields

def num(v):
    try:
        x = float(v)
        return x if x == x else None
    except (TypeError, ValueError):
        return None

def values(row, server, key):
    by_round = runs.get((row, server), {})
    return {r: num(f.get(key)) for r, f in by_round.items() if num(f.get(key)) is not None}

def k(x):
    return f"{x / 1000:.1f}k" if x >= 1000 else f"{x:.0f}"

def mb(kb):
    return f"{kb / 1024:.0f} MB"

def cell(vals, fmt, bold=False):
    if not vals:
        return "n/a"
    median = statistics.median(vals.values())
    head = f"**{fmt(median)}**" if bold else fmt(median)
    if len(vals) > 1 and len(vals) <= 5:
        return f"{head} ({' / '.join(fmt(vals[r]) for r in sorted(vals))})"
    return head

def median(vals, fmt, bold=False):
    if not vals:
        return "n/a"
    text = fmt(statistics.median(vals.values()))
    return f"**{text}**" if bold else text

def ratio_cell(mine, bare):
    common = sorted(set(mine) & set(bare))
    ratios = [mine[r] / bare[r] for r in common if bare[r]]
    if not ratios:
        return "n/a"
    text = f"**{statistics.median(ratios):.2f}**"
    if len(ratios) > 1:
        text += f" ({min(ratios):.2f}–{max(ratios):.2f})"
    return text

variants = [s for s in ("bare-fsync", "host", "host-interval", "host-sf", "host-aot", "inmem") if any(key[1] == s for key in runs)]
names = {
    "bare-fsync": "bare Kestrel + fsync group commit (the durable ceiling, **not the product**)",
    "host": "MiniQueue.Host",
    "host-interval": "MiniQueue.Host `-commit interval`",
    "host-sf": "MiniQueue.Host single file",
    "host-aot": "MiniQueue.Host Native AOT",
    "inmem": "in memory, **not the product** (HttpBench)",
}
print(f"| what | bare Kestrel | MiniQueue | ratio: median (min–max) of the {rounds} rounds |")
print("|---|---|---|---|")
for v in variants:
    n = names[v]
    def latency(p50, p99, rate, bold):
        ms = lambda us: f"{us / 1000:.3f}"
        return f"p50 {cell(p50, ms, bold)} ms, p99 {median(p99, ms)} ms; {median(rate, k)} req/s"
    for suffix, when in (("", ""), ("-settled", f", after {settle} s of load")):
        if not any(key == ("pub10" + suffix, v) for key in runs):
            continue
        for row, title in (("pub10", "publish, h2load `-c 12 -m 10`, 10-byte bodies"),
                           ("pub1k", "publish, h2load `-c 12 -m 10`, 1 KiB bodies")):
            row += suffix
            print(f"| {n}: {title}{when}, req/s | {cell(values(row, 'bare', 'rate'), k)} | {cell(values(row, v, 'rate'), k, True)} | {ratio_cell(values(row, v, 'rate'), values(row, 'bare', 'rate'))} |")
            # The server's own CPU time per request (a neighbour's load moves it less than req/s); the ratio is
            # bare / this server, so that 1.00 means as little CPU per request as the bare app, as in the req/s rows.
            us = lambda x: f"{x:.1f} µs"
            mine, bare_cpu = values(row, v, "cpu_us"), values(row, "bare", "cpu_us")
            print(f"| {n}: {title}{when}, server CPU per request | {cell(bare_cpu, us)} | {cell(mine, us, True)} | {ratio_cell(bare_cpu, mine)} |")
        b50, m50 = values("lat" + suffix, "bare", "p50_us"), values("lat" + suffix, v, "p50_us")
        b99, m99 = values("lat" + suffix, "bare", "p99_us"), values("lat" + suffix, v, "p99_us")
        diffs = [m50[r] - b50[r] for r in sorted(set(m50) & set(b50))]
        diff = "n/a" if not diffs else f"p50 **{statistics.median(diffs) / 1000:+.3f} ms**" + (f" ({min(diffs) / 1000:+.3f} to {max(diffs) / 1000:+.3f})" if len(diffs) > 1 else "")
        print(f"| {n}: publish latency, h2load `-c 1 -m 1` (one stream), 10-byte bodies{when} | {latency(b50, b99, values('lat' + suffix, 'bare', 'rate'), False)} | {latency(m50, m99, values('lat' + suffix, v, 'rate'), True)} | {diff} |")
    if v == "bare-fsync":
        continue  # the durable ceiling only publishes: no consume rows, and its memory is not the product's
    for row, title in (("cons1", "consume+ACK, MiniQueueClient, 1 stream, msg/s"),
                       ("cons12", "consume+ACK, MiniQueueClient, 12 streams over 4 connections, msg/s")):
        target = values("consume-target", row, "n")
        size = f"topic of {statistics.median(target.values()):,.0f} × 100 B, a run ends at 90 % of it" if target else "100-byte messages"
        print(f"| {n}: {title} ({size}) | {cell(values(row, 'bare', 'rate'), k)} | {cell(values(row, v, 'rate'), k, True)} | {ratio_cell(values(row, v, 'rate'), values(row, 'bare', 'rate'))} |")
    # Memory: medians in the table, every round's figures in the raw results.
    idle = lambda s, key: values("mem-idle", s, key)
    fmt_idle = lambda s, bold: f"{median(idle(s, 'rss_kb'), mb, bold)} = {median(idle(s, 'anon_kb'), mb)} + {median(idle(s, 'file_kb'), mb)}"
    print(f"| {n}: idle memory 5 s after start, VmRSS = RssAnon (private) + RssFile (mapped files) | {fmt_idle('bare', False)} | {fmt_idle(v, True)} | RSS {ratio_cell(idle(v, 'rss_kb'), idle('bare', 'rss_kb'))}, RssAnon {ratio_cell(idle(v, 'anon_kb'), idle('bare', 'anon_kb'))} |")
    peak = lambda s: values("mem-publish", s, "peak_rss_kb")
    hwm = lambda s: values("mem-publish", s, "hwm_kb")
    print(f"| {n}: peak RSS sampled during the publish runs; VmHWM after them | {cell(peak('bare'), mb)}; VmHWM {median(hwm('bare'), mb)} | {cell(peak(v), mb, True)}; VmHWM {median(hwm(v), mb)} | {ratio_cell(peak(v), peak('bare'))} |")
print()
if "bare-fsync" in variants and "host" in variants:
    against = [f"{row} {ratio_cell(values(row, 'host', 'rate'), values(row, 'bare-fsync', 'rate'))}"
               for row in ("pub10", "pub1k", "lat", "pub10-settled", "pub1k-settled", "lat-settled") if values(row, "host", "rate")]
    print("MiniQueue.Host (durable, fsync) against the durable ceiling (bare-fsync) in the same round, req/s ratio, "
          "median (min–max): " + "; ".join(against) + ".")
print("Load average (1, 5, 15 min) before → after each round: " + "; ".join(
    f"round {r}: {loads[r].get('before', '?')} → {loads[r].get('after', '?')}" for r in sorted(loads)))
if fills:
    by_server = {}
    for s, f in fills:
        by_server.setdefault(s, []).append(f"{int(f['n']):,} in {num(f['seconds']):.0f} s")
    print(f"Fills and top-ups of the consume topics (h2load -n N -c 12 -m 100, untimed), in order: " + "; ".join(
        f"{s}: {', '.join(t)}" for s, t in by_server.items()) + ".")
logs = [(s, f) for (row, s), by_round in runs.items() if row == "log" for f in by_round.values()]
for s in variants:
    sizes = [num(f["bytes"]) for srv, f in logs if srv == s]
    lines = [num(f["lines"]) for srv, f in logs if srv == s]
    if sizes and s not in ("inmem", "bare-fsync"):
        print(f"{names[s]} wrote {statistics.median(lines):,.0f} log lines ({statistics.median(sizes) / 1e6:,.0f} MB) to stderr per round (median).")
PY
if [ -s "$problems" ]; then
  echo; echo "problems (also in $problems):"; sed 's/^/  /' "$problems"
else
  echo; echo "problems: none (no failed, errored or non-2xx requests, no drained topic, no warnings in the logs)"
fi
echo "done in $(($(date +%s) - started_all)) s; results in $RESULTS"
