#!/usr/bin/env bash
# Two versions of the service side by side: each tree runs `formulary serve --workers 2` on its own
# fresh SQLite instance at once, and the same short runs alternate between them, so noise from
# other work on the machine hits both alike. For each run: achieved requests/s, p50 and p99
# latency, and the server's CPU time (master + workers, user + system) per audited decision.
#   bench/http_ab.sh TREE_A TREE_B [rounds=3] [seconds=5]
# SERVE_A / SERVE_B add options to one side's `formulary serve` (e.g. SERVE_B="--threads 8").
# A tree is a checkout of this repository (e.g. `git archive HEAD | tar -x -C /tmp/a`); both use
# this checkout's .venv, each importing its own `service` package through PYTHONPATH.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
a=$(cd "$1" && pwd); b=$(cd "$2" && pwd); rounds=${3:-3}; seconds=${4:-5}
work=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true' EXIT

start() {  # start TREE NAME: serve TREE on a free port; sets port_NAME, token_NAME, pid_NAME
  local tree=$1 name=$2 port instance
  port=$("$here/.venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  instance="$work/$name/instance"
  mkdir -p "$work/$name"
  (cd "$tree" && PYTHONPATH="$tree" FORMULARY_INSTANCE_PATH="$instance" \
      "$here/.venv/bin/formulary" tokens create --name bench --role pharmacist | tail -1) > "$work/$name/token"
  (cd "$tree" && PYTHONPATH="$tree" FORMULARY_INSTANCE_PATH="$instance" \
      eval exec "$here/.venv/bin/formulary" serve --port "$port" --workers 2 "\${SERVE_$name:-}") > "$work/$name/serve.out" 2>&1 &
  pids+=($!)
  eval "port_$name=$port; pid_$name=$!; token_$name=\$(cat \"$work/$name/token\")"
  until curl -sf "http://127.0.0.1:$port/healthz" >/dev/null; do sleep 0.5; done
}

server_cpu() {  # CPU seconds so far of the server's main process and its workers
  local total=0 pid
  for pid in $1 $(pgrep -P "$1"); do
    total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
  done
  echo "$total $(getconf CLK_TCK)" | awk '{printf "%.3f", $1 / $2}'
}

start "$a" A
start "$b" B
for name in A B; do   # warm-up
  eval "port=\$port_$name; token=\$token_$name"
  FORMULARY_TOKEN=$token wrk -t2 -c8 -d2s -s "$here/bench/decisions.lua" "http://127.0.0.1:$port" >/dev/null 2>&1
done
echo "A = $a ${SERVE_A:-}"
echo "B = $b ${SERVE_B:-}"
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); SQLite (WAL, synchronous=FULL); load tools on the same machine"
for round in $(seq "$rounds"); do
  for test in paced500 wrk64; do
    for name in A B; do
      eval "port=\$port_$name; token=\$token_$name; pid=\$pid_$name"
      cpu0=$(server_cpu "$pid")
      if [ "$test" = paced500 ]; then   # 500 requests/s offered, Poisson arrivals
        out=$(RATE=500 FORMULARY_TOKEN=$token wrk -t1 -c100 -d"${seconds}s" --latency \
                  -s "$here/bench/decisions.lua" "http://127.0.0.1:$port" 2>&1)
      else
        out=$(FORMULARY_TOKEN=$token wrk -t2 -c64 -d"${seconds}s" --latency -s "$here/bench/decisions.lua" \
                  "http://127.0.0.1:$port" 2>&1)
      fi
      rate=$(echo "$out" | awk '/Requests\/sec/ {printf "%.0f", $2}')
      p50=$(echo "$out" | awk '$1 == "50%" {print $2}')
      p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
      done_=$(echo "$out" | awk '/requests in/ {print $1}')
      cpu1=$(server_cpu "$pid")
      printf "round %s %-6s %s: %5s/s  p50 %9s  p99 %9s  server CPU %s ms per request\n" "$round" "$test" "$name" \
        "$rate" "$p50" "$p99" "$(echo "$cpu1 $cpu0 ${done_:-0}" | awk '{ if ($3 > 0) printf "%.2f", ($1 - $2) * 1000 / $3; else print "-" }')"
    done
  done
done
for name in A B; do
  eval "instance=$work/$name/instance"
  tree=$([ "$name" = A ] && echo "$a" || echo "$b")
  echo "$name: $(cd "$tree" && PYTHONPATH="$tree" FORMULARY_INSTANCE_PATH="$instance" "$here/.venv/bin/formulary" audit verify | tr -d '\n')"
done
