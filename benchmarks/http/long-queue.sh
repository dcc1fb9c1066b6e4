#!/usr/bin/env bash
# A long queue over HTTP/2: COUNT (10,000,000) 100-byte messages published to one topic of the published MiniQueue.Host
# (default flags apart from -port -db -cert -key: durable, fsync), nobody consuming, while dotnet-trace records the
# runtime's GC events; then the GC pauses (suspension to restart, from those events), the host's memory and the count.
#
#   benchmarks/http/long-queue.sh                 # COUNT=10000000, about 2 minutes here
#   COUNT=1000000 benchmarks/http/long-queue.sh
#   DELAY=3600 benchmarks/http/long-queue.sh      # published with ?delay=3600: all of them delayed, none ready
#
# Needs h2load (apt-get install -y nghttp2-client), openssl, curl and dotnet-trace (dotnet tool install -g dotnet-trace).
set -euo pipefail
cd "$(dirname "$0")/../.."
COUNT=${COUNT:-10000000}
DELAY=${DELAY:-}
query=${DELAY:+?delay=$DELAY}
PORT=${PORT:-18460}
trace=${DOTNET_TRACE:-$(command -v dotnet-trace || echo "$HOME/.dotnet/tools/dotnet-trace")}
for tool in h2load openssl curl "$trace"; do
  command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 1; }
done

work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

dotnet publish MiniQueue.Host -c Release -o "$work/host" -v quiet -nologo >/dev/null
dotnet build benchmarks/MiniQueue.GcPauses -c Release -v quiet -nologo >/dev/null
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj /CN=localhost \
  -addext subjectAltName=IP:127.0.0.1 -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
head -c 100 /dev/zero >"$work/body"

"$work/host/MiniQueue.Host" -port "$PORT" -db "$work/db" -cert "$work/cert.pem" -key "$work/key.pem" 2>"$work/host.log" &
pid=$!
for _ in $(seq 1 100); do curl -sk "https://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
echo "# $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); publishing $COUNT messages of 100 bytes"

"$trace" collect -p "$pid" --profile gc-collect -o "$work/gc.nettrace" >"$work/trace.log" 2>&1 &
tracer=$!
sleep 2
echo "\$ h2load -n $COUNT -c 12 -m 100 -d BODY https://127.0.0.1:$PORT/publish/long$query"
h2load -n "$COUNT" -c 12 -m 100 -d "$work/body" "https://127.0.0.1:$PORT/publish/long$query" | grep -E "^finished in|^status codes|^requests:"
sleep 1
echo "# host memory after: $(grep -E 'VmRSS|VmHWM|RssAnon' /proc/$pid/status | tr -s ' \t' ' ' | tr '\n' ' ')"
metrics=$(curl -sk "https://127.0.0.1:$PORT/metrics")
echo "# queued: $(grep -E '^miniqueue_messages_ready\{topic="long"\}' <<<"$metrics" | cut -d' ' -f2) ready, $(grep -E '^miniqueue_messages_delayed\{topic="long"\}' <<<"$metrics" | cut -d' ' -f2) delayed"
# The tracer stops when the host does (a background job ignores SIGINT, so it cannot be stopped the Ctrl+C way).
kill -TERM "$pid"
wait "$pid" || true
pid=
wait "$tracer" || true
dotnet benchmarks/MiniQueue.GcPauses/bin/Release/net10.0/MiniQueue.GcPauses.dll "$work/gc.nettrace"
echo "# load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
