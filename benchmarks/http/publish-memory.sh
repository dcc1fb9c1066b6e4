#!/usr/bin/env bash
# Peak memory of the published MiniQueue.Host (default flags apart from -port -db -cert -key: durable, fsync) under the
# publish loads, for each setting given: 8 s of h2load -c 12 -m 10 with 10-byte bodies, then 8 s with 1 KiB bodies
# (to a topic nobody consumes), the rate of each and VmHWM after each. Every setting is a list of environment
# variables for the host (or "default"), and gets a fresh data directory; ROUNDS (2) runs them all, alternating.
#
#   benchmarks/http/publish-memory.sh default DOTNET_gcServer=1 "DOTNET_gcServer=0 DOTNET_gcConcurrent=0"
#   benchmarks/http/publish-memory.sh default MiniQueue__BodyCacheBytes=16777216
#
# Needs h2load (apt-get install -y nghttp2-client), openssl and curl.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${ROUNDS:-2}
PORT=${PORT:-18470}
[ $# -gt 0 ] || set -- default
work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

dotnet publish MiniQueue.Host -c Release -o "$work/host" -v quiet -nologo >/dev/null
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj /CN=localhost \
  -addext subjectAltName=IP:127.0.0.1 -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
head -c 10 /dev/zero >"$work/body10"
head -c 1024 /dev/zero >"$work/body1k"
rate() { h2load -c 12 -m 10 -D 8 -d "$1" "https://127.0.0.1:$PORT/publish/$2" 2>&1 | sed -n 's/^finished in [0-9.]*s, \([0-9.]*\) req\/s.*/\1/p' | cut -d. -f1; }
hwm() { awk '/VmHWM/{print int($2/1024)}' "/proc/$pid/status"; }

echo "# $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
for round in $(seq 1 "$ROUNDS"); do
  for setting in "$@"; do
    vars=()
    [ "$setting" = default ] || read -r -a vars <<<"$setting"
    rm -rf "$work/db"
    env ${vars[@]+"${vars[@]}"} "$work/host/MiniQueue.Host" -port "$PORT" -db "$work/db" -cert "$work/cert.pem" -key "$work/key.pem" 2>"$work/host.log" &
    pid=$!
    for _ in $(seq 1 100); do curl -sk "https://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
    small=$(rate "$work/body10" p10); after_small=$(hwm)
    large=$(rate "$work/body1k" p1k); after_large=$(hwm)
    echo "round $round, $setting: 10 B ${small} req/s, VmHWM ${after_small} MB; 1 KiB ${large} req/s, VmHWM ${after_large} MB; load $(cut -d' ' -f1 /proc/loadavg)"
    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
  done
done
