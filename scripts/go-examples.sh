#!/usr/bin/env bash
# Runs the Go miniqueue's own example clients, unchanged, against MiniQueue.Host as shipped (durable, fsync).
#
#   scripts/go-examples.sh /path/to/miniqueue-checkout [host flags...]
#
# Extra arguments go to the host, e.g. -postgres "Host=127.0.0.1;Port=5432;Username=postgres;Database=mq" to run the
# examples against shared mode (docs/shared-mode.md).
#
# Needs Go (Debian: apt-get install golang-go) and a checkout of github.com/tomarrell/miniqueue (not part of this
# repository; a bare clone works too: pass its git directory). The examples talk to https://localhost:8080 and trust the host's generated certificate through
# SSL_CERT_FILE. Each example's main.go is built as it is, in a module of its own (they use only the standard library).
set -euo pipefail

checkout=${1:?usage: scripts/go-examples.sh /path/to/miniqueue-checkout [host flags...]}
shift
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'kill "${host:-0}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT

for example in echo workers exponential_backoff bench_consume; do
  mkdir -p "$work/$example"
  if [ -f "$checkout/examples/$example/main.go" ]; then
    cp "$checkout/examples/$example/main.go" "$work/$example/"
  else
    git --git-dir="$checkout" show "HEAD:examples/$example/main.go" > "$work/$example/main.go"
  fi
  printf 'module example/%s\n\ngo 1.19\n' "$example" > "$work/$example/go.mod"
  (cd "$work/$example" && GOPROXY=off GOFLAGS=-mod=mod go build -o "$work/bin-$example" .)
done

dotnet publish "$root/MiniQueue.Host" -c Release -o "$work/host" > /dev/null
cd "$work"
"$work/host/MiniQueue.Host" -db data -port 8080 -level info "$@" > host.log 2>&1 &
host=$!
for _ in $(seq 50); do [ -f data/tls/localhost.pem ] && break; sleep 0.2; done
sleep 1
export SSL_CERT_FILE=$work/data/tls/localhost.pem
fail=0

echo "== echo: publish and consume what is typed"
out=$(printf 'hello\nworld\nq\n' | timeout 30 ./bin-echo 2>&1)
if grep -q 'Consumed message: hello' <<< "$out" && grep -q 'Consumed message: world' <<< "$out"; then echo ok; else echo "FAILED: $out"; fail=1; fi

echo "== exponential_backoff: DACK 1, 2, 4 s"
out=$(timeout 12 ./bin-exponential_backoff 2>&1 || true)
if [ "$(grep -c 'consumed message: hello_world' <<< "$out")" -ge 3 ]; then echo ok; else echo "FAILED: $out"; fail=1; fi
curl -s --cacert "$SSL_CERT_FILE" -X DELETE https://localhost:8080/test_topic > /dev/null

echo "== workers -validate: FIFO with random NACKs, 15 s"
out=$(timeout 15 ./bin-workers -validate -consumers 1 -rate 10ms -sleep 0 -chance 5 2>&1 || true)
consumed=$(grep -c 'consumed message' <<< "$out" || true)
if ! grep -q 'panic' <<< "$out" && [ "$consumed" -gt 100 ]; then echo "ok ($consumed deliveries)"; else echo "FAILED: $(tail -5 <<< "$out")"; fail=1; fi

echo "== bench_consume: 150,000 prefilled, 3 s"
if command -v h2load > /dev/null; then
  printf 'x' > one
  h2load -n 150000 -c 4 -m 10 -d one https://127.0.0.1:8080/publish/test > /dev/null
  out=$(timeout 20 ./bin-bench_consume -duration 3s 2>&1 || true)
  if grep -q 'consumed' <<< "$out"; then echo "ok: $(tail -1 <<< "$out")"; else echo "FAILED: $out"; fail=1; fi
else
  echo "skipped: prefilling needs h2load (apt-get install nghttp2-client)"
fi

exit $fail
