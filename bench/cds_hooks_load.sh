#!/usr/bin/env bash
# CDS Hooks order-sign calls through `formulary serve` (granian, 2 workers) with wrk: at an offered
# load of 100 calls/s (Poisson arrivals) and at saturation (8 connections). Each call carries its
# own ES384-signed JWT (verified, its jti stored) and decides and records one IVIG order. It also
# reports the server's CPU time (main process and workers, user + system, from /proc) per call at
# saturation, which moves far less than wall-clock figures when other work shares the machine.
#   bench/cds_hooks_load.sh [seconds=15]
# With FORMULARY_DATABASE_URL set (PostgreSQL), it runs on that database; else on a fresh SQLite.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-15}
work=$(mktemp -d)
export FORMULARY_INSTANCE_PATH=$work/instance
port=$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
url="http://127.0.0.1:$port"
.venv/bin/python bench/cds_hooks_client.py keys "$work/ehr"
.venv/bin/formulary cds-clients add --iss https://ehr.bench.example --jwks "$work/ehr/jwks.json" >/dev/null
.venv/bin/python bench/cds_hooks_client.py order-sign > "$work/body.json"
.venv/bin/formulary serve --port "$port" --workers 2 > "$work/serve.out" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null' EXIT
until curl -sf "$url/healthz" >/dev/null; do sleep 0.5; done
server_cpu() {  # user + system CPU seconds of the server's main process and its workers so far
  local total=0 pid
  for pid in $server $(pgrep -P "$server"); do
    total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
  done
  echo "$total $(getconf CLK_TCK)" | awk '{printf "%.3f", $1 / $2}'
}
report() {
  awk '/^status / {bad[$2]++; next} /Requests\/sec| 50%| 90%| 99%|requests in|Socket errors/ {print}
       END {for (code in bad) printf "  answers with status %s: %d\n", code, bad[code]}'
}
sign() {  # $1 tokens for the order-sign service into $work/tokens
  .venv/bin/python bench/cds_hooks_client.py token "$work/ehr" https://ehr.bench.example "$url/cds-services/ivig-order-sign" "$1" > "$work/tokens"
}
export TOKENS=$work/tokens BODY=$work/body.json
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); database: ${FORMULARY_DATABASE_URL:-SQLite (WAL, synchronous=FULL)}; load tool on the same machine"
sign 200; wrk -t1 -c4 -d2s -s bench/cds_hooks.lua "$url" >/dev/null 2>&1   # warm-up
echo "--- offered load 100 order-sign calls/s for ${seconds}s (wrk, Poisson arrivals over 20 connections)"
sign $((100 * seconds * 2)); RATE=100 wrk -t1 -c20 -d"${seconds}s" --latency -s bench/cds_hooks.lua "$url" 2>&1 | report
echo "--- saturation: 8 connections, ${seconds}s"
sign $((1500 * seconds))
cpu0=$(server_cpu)
out=$(wrk -t1 -c8 -d"${seconds}s" --latency -s bench/cds_hooks.lua "$url" 2>&1)
cpu1=$(server_cpu)
echo "$out" | report
echo "server CPU at saturation: $(echo "$cpu1 $cpu0 $(echo "$out" | awk '/requests in/ {print $1}')" | awk '{printf "%.1f s for %d calls = %.2f ms per call", $1 - $2, $3, ($1 - $2) * 1000 / $3}')"
