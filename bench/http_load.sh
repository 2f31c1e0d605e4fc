#!/usr/bin/env bash
# Audited decisions through `formulary serve` (granian, 2 workers), with wrk and the rotating
# request mix of bench/decisions.lua: at fixed offered loads of 200, 500 and 1,000 requests/s
# (requests scheduled as a Poisson stream, whenever answers come) and at saturation (64
# connections, as fast as answers come). Then it checks every decision reached the audit log and
# times the chain verification. It also reports the server's CPU time (main process and
# workers, user + system, from /proc) per decision at saturation, which moves far less than
# wall-clock figures when other work shares the machine.
#   bench/http_load.sh [seconds=15]
# With FORMULARY_DATABASE_URL set (PostgreSQL), it runs on that database; else on a fresh SQLite.
# SERVE adds options to `formulary serve` (e.g. SERVE="--threads 8").
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-15}
export FORMULARY_INSTANCE_PATH=$(mktemp -d)/instance
port=$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export FORMULARY_TOKEN=$(.venv/bin/formulary tokens create --name bench --role pharmacist | tail -1)
# shellcheck disable=SC2086
.venv/bin/formulary serve --port "$port" --workers 2 ${SERVE:-} > "$FORMULARY_INSTANCE_PATH/serve.out" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null' EXIT
until curl -sf "http://127.0.0.1:$port/healthz" >/dev/null; do sleep 0.5; done
url="http://127.0.0.1:$port"
server_cpu() {  # user + system CPU seconds of the server's main process and its workers so far
  local total=0 pid
  for pid in $server $(pgrep -P "$server"); do
    total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
  done
  echo "$total $(getconf CLK_TCK)" | awk '{printf "%.3f", $1 / $2}'
}
report() {  # wrk's summary lines, and a count of the answers that were not 201 (decisions.lua names them)
  awk '/^status / {bad[$2]++; next} /Requests\/sec| 50%| 90%| 99%|requests in|Socket errors/ {print}
       END {for (code in bad) printf "  answers with status %s: %d\n", code, bad[code]}'
}
wrk -t2 -c8 -d3s -s bench/decisions.lua "$url" >/dev/null 2>&1   # warm-up
before=$(.venv/bin/formulary audit head | cut -d' ' -f1)
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); database: ${FORMULARY_DATABASE_URL:-SQLite (WAL, synchronous=FULL)}; load tool on the same machine"
echo "server: formulary serve --workers 2 ${SERVE:-}"
for rate in 200 500 1000; do
  connections=$((rate / 5))
  echo "--- offered load ${rate} requests/s for ${seconds}s (wrk, Poisson arrivals over ${connections} connections)"
  RATE=$rate wrk -t1 -c"$connections" -d"${seconds}s" --latency -s bench/decisions.lua "$url" 2>&1 | report
done
echo "--- saturation: wrk, 64 connections, ${seconds}s"
cpu0=$(server_cpu); head0=$(.venv/bin/formulary audit head | cut -d' ' -f1)
wrk -t2 -c64 -d"${seconds}s" --latency -s bench/decisions.lua "$url" 2>&1 | report
cpu1=$(server_cpu)
after=$(.venv/bin/formulary audit head | cut -d' ' -f1)
echo "server CPU at saturation: $(echo "$cpu1 $cpu0 $((after - head0))" | awk '{printf "%.1f s for %d decisions = %.2f ms per decision", $1 - $2, $3, ($1 - $2) * 1000 / $3}')"
echo "audit records written during the measured runs: $((after - before))"
start=$(date +%s.%N)
.venv/bin/formulary audit verify
echo "verify time: $(echo "$(date +%s.%N) - $start" | bc) s"
