#!/usr/bin/env bash
# Audited decisions through `formulary serve` (granian, 2 workers), measured against the framework
# floor in the same run: bench/floor_app.py, a bare Flask endpoint that parses the same JSON body
# and answers 201, served by granian with the same workers, threads and RSGI adapter. Load comes
# from wrk with the rotating request mix of bench/decisions.lua:
# - saturation (64 connections, as fast as answers come): the floor, ours, the floor again; for
#   each, requests/s and the server's CPU time (main process and workers, user + system, from
#   /proc) per request, which moves far less than wall-clock figures when other work shares the
#   machine; then ours as ratios to the floor (the mean of its two runs);
# - ours at fixed offered loads of 200, 500 and 1,000 requests/s and at half the floor's saturation
#   rate (requests scheduled as a Poisson stream, whenever answers come).
# Then it checks every decision reached the audit log and times the chain verification.
#   bench/http_load.sh [seconds=15]
# With FORMULARY_DATABASE_URL set (PostgreSQL), it runs on that database; else on a fresh SQLite.
# THREADS sets the threads per worker of both servers (default 32, as `formulary serve`); SERVE
# adds other options to `formulary serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-15}
threads=${THREADS:-32}
export FORMULARY_INSTANCE_PATH=$(mktemp -d)/instance
free_port() { .venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port=$(free_port); floor_port=$(free_port)
export FORMULARY_TOKEN=$(.venv/bin/formulary tokens create --name bench --role pharmacist | tail -1)
# shellcheck disable=SC2086
.venv/bin/formulary serve --port "$port" --workers 2 --threads "$threads" ${SERVE:-} > "$FORMULARY_INSTANCE_PATH/serve.out" 2>&1 &
server=$!
# the floor: granian as `formulary serve` starts it (service/cli/commands.py), on the floor app
FORMULARY_THREADS=$threads FORMULARY_BODY_TIMEOUT=10 .venv/bin/python -m granian --interface rsgi --no-ws \
  --host 127.0.0.1 --port "$floor_port" --workers 2 --http1-header-read-timeout 10000 \
  --working-dir bench --factory floor_app:create_floor_app > "$FORMULARY_INSTANCE_PATH/floor.out" 2>&1 &
floor=$!
trap 'kill $server $floor 2>/dev/null; wait $server $floor 2>/dev/null' EXIT
url="http://127.0.0.1:$port"; floor_url="http://127.0.0.1:$floor_port"
until curl -sf "$url/healthz" >/dev/null && curl -sf "$floor_url/healthz" >/dev/null; do sleep 0.5; done
server_cpu() {  # user + system CPU seconds so far of server $1's main process and its workers
  local total=0 pid
  for pid in $1 $(pgrep -P "$1"); do
    total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
  done
  echo "$total $(getconf CLK_TCK)" | awk '{printf "%.3f", $1 / $2}'
}
report() {  # wrk's summary lines, and a count of the answers that were not 201 (decisions.lua names them)
  awk '/^status / {bad[$2]++; next} /Requests\/sec| 50%| 90%| 99%|requests in|Socket errors/ {print}
       END {for (code in bad) printf "  answers with status %s: %d\n", code, bad[code]}'
}
p99_ms() {  # wrk's 99% line in milliseconds
  awk '$1 == "99%" { v = $2; n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n *= 1; else if (v ~ /m$/) n *= 60000; else if (v ~ /s$/) n *= 1000; printf "%.1f", n }'
}
saturate() {  # saturate NAME PID URL: 64 connections; prints wrk's lines, sets rate_NAME and cpu_NAME (ms per request)
  local out cpu0 cpu1 done_
  cpu0=$(server_cpu "$2")
  out=$(wrk -t2 -c64 -d"${seconds}s" --latency -s bench/decisions.lua "$3" 2>&1)
  cpu1=$(server_cpu "$2")
  echo "$out" | report
  done_=$(echo "$out" | awk '/requests in/ {print $1}')
  eval "rate_$1=$(echo "$out" | awk '/Requests\/sec/ {printf "%.0f", $2}')"
  eval "cpu_$1=$(echo "$cpu1 $cpu0 $done_" | awk '{printf "%.3f", ($1 - $2) * 1000 / $3}')"
  echo "  server CPU: $(echo "$cpu1 $cpu0 $done_" | awk '{printf "%.1f s for %d requests = %.3f ms per request", $1 - $2, $3, ($1 - $2) * 1000 / $3}')"
}
wrk -t2 -c8 -d3s -s bench/decisions.lua "$url" >/dev/null 2>&1   # warm-up
wrk -t2 -c8 -d3s -s bench/decisions.lua "$floor_url" >/dev/null 2>&1
before=$(.venv/bin/formulary audit head | cut -d' ' -f1)
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); database: ${FORMULARY_DATABASE_URL:-SQLite (WAL, synchronous=FULL)}; load tool on the same machine"
echo "servers: formulary serve --workers 2 --threads $threads ${SERVE:-}; the floor (bench/floor_app.py) with 2 workers of $threads threads"
echo "--- saturation, the floor: wrk, 64 connections, ${seconds}s"
saturate floor1 "$floor" "$floor_url"
echo "--- saturation, ours: wrk, 64 connections, ${seconds}s"
head0=$(.venv/bin/formulary audit head | cut -d' ' -f1)
saturate ours "$server" "$url"
decided=$(( $(.venv/bin/formulary audit head | cut -d' ' -f1) - head0 ))
echo "  audit records written: $decided"
echo "--- saturation, the floor again: wrk, 64 connections, ${seconds}s"
saturate floor2 "$floor" "$floor_url"
# shellcheck disable=SC2154  # set by saturate
half=$(( (rate_floor1 + rate_floor2) / 4 ))
declare -A p99
for rate in 200 500 1000 "$half"; do
  connections=$(( rate / 5 > 20 ? rate / 5 : 20 ))
  echo "--- ours at an offered load of ${rate} requests/s for ${seconds}s (wrk, Poisson arrivals over ${connections} connections)"
  out=$(RATE=$rate wrk -t1 -c"$connections" -d"${seconds}s" --latency -s bench/decisions.lua "$url" 2>&1)
  echo "$out" | report
  p99[$rate]=$(echo "$out" | p99_ms)
done
echo "--- summary (load average now $(cut -d' ' -f1-3 /proc/loadavg))"
# shellcheck disable=SC2154
awk -v f1="$rate_floor1" -v f2="$rate_floor2" -v fc1="$cpu_floor1" -v fc2="$cpu_floor2" -v r="$rate_ours" -v c="$cpu_ours" \
    -v half="$half" -v p="${p99[$half]}" 'BEGIN {
  fr = (f1 + f2) / 2; fc = (fc1 + fc2) / 2
  printf "floor: %.3f ms server CPU per request (%.3f, %.3f); saturation %.0f requests/s (%d, %d)\n", fc, fc1, fc2, fr, f1, f2
  printf "ours:  %.3f ms server CPU per decision; saturation %d decisions/s\n", c, r
  printf "ours/floor: CPU %.2fx (goal at most 2x); throughput %.2f (goal at least 0.5)\n", c / fc, r / fr
  printf "ours at half the floor'"'"'s saturation rate (%d/s offered): p99 %s ms (goal under 25 ms)\n", half, p
}'
echo "audit records written during the measured runs: $(( $(.venv/bin/formulary audit head | cut -d' ' -f1) - before ))"
start=$(date +%s.%N)
.venv/bin/formulary audit verify
echo "verify time: $(echo "$(date +%s.%N) - $start" | bc) s"
