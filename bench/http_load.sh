#!/usr/bin/env bash
# Audited decisions per second through `formulary serve` (gunicorn, 2 workers) at saturation,
# measured with wrk on this machine; then checks every decision is on the record and the chain verifies.
#   bench/http_load.sh [seconds=15] [connections=16]
# FORMULARY_DATABASE_URL may point at PostgreSQL; the default is a fresh SQLite instance.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-15}; connections=${2:-16}
export FORMULARY_INSTANCE_PATH=$(mktemp -d)/instance
port=$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export FORMULARY_TOKEN=$(.venv/bin/formulary tokens create --name bench --role pharmacist | tail -1)
.venv/bin/formulary serve --port "$port" --workers 2 > "$FORMULARY_INSTANCE_PATH/serve.out" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null' EXIT
until curl -sf "http://127.0.0.1:$port/healthz" >/dev/null; do sleep 0.5; done
wrk -t2 -c4 -d3s -s bench/decisions.lua "http://127.0.0.1:$port" >/dev/null 2>&1   # warm-up
before=$(.venv/bin/formulary audit head | cut -d' ' -f1)
echo "machine: $(nproc) cores; database: ${FORMULARY_DATABASE_URL:-SQLite (WAL, synchronous=FULL)}"
wrk -t2 -c"$connections" -d"${seconds}s" --latency -s bench/decisions.lua "http://127.0.0.1:$port" 2>&1 \
  | grep -E "Requests/sec|Latency|50%|99%|requests in|Non-2xx|Socket errors|status"
after=$(.venv/bin/formulary audit head | cut -d' ' -f1)
echo "audit records written during the run: $((after - before))"
start=$(date +%s.%N)
.venv/bin/formulary audit verify
echo "verify time: $(echo "$(date +%s.%N) - $start" | bc) s"
