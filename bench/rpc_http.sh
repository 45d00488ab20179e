#!/usr/bin/env bash
# JSON-RPC over HTTP: kaiju's HTTPServer (plain, with metrics, with one no-op RPC middleware,
# with one rate limit on the echo method (RPCServer.rate_limits, in memory, never reached),
# traced by the Telemetry service at sample_ratio 0.1 and 1.0) vs kaiju-tools 2.4.26 vs the
# aiohttp ceiling, one run. The traced servers export over OTLP/HTTP to bench/otlp_sink.py, a
# local receiver that drops the data (started once, in a process of its own). Tracing's cost on a
# stream consumer, beside FastStream's own tracing middleware: bench/streams_tracing.py.
#
#   bench/rpc_http.sh                 (needs wrk: apt-get install -y wrk)
#
# One server at a time on 127.0.0.1, the same wrk settings for each:
#   wrk -t1 -c64 -d${DURATION}s -s shared/peers/rpc_echo.lua
# after a short warm-up. ROUNDS rounds (alternating servers), best round per server.
# Env: DURATION (s, 10), ROUNDS (3), CONNECTIONS (64), KAIJU_PEERS (the peers folder),
#      PYTHON (kaiju's python, default .venv/bin/python), KAIJU_LOOP (kaiju's loop, as
#      kaiju-run reads it). The aiohttp ceiling runs on the same loop as kaiju's server.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
find_peers() {
  if [[ -n ${KAIJU_PEERS:-} ]]; then echo "$KAIJU_PEERS"; return; fi
  local dir
  dir="$(dirname "$ROOT")"
  while [[ $dir != / ]]; do  # ../shared/peers from the repo root, or from a folder above it
    if [[ -d $dir/shared/peers ]]; then echo "$dir/shared/peers"; return; fi
    dir="$(dirname "$dir")"
  done
  echo "$(dirname "$ROOT")/shared/peers"
}
PEERS="$(find_peers)"
PY=${PYTHON:-$ROOT/.venv/bin/python}
PEER_PY="$("$PEERS/setup.sh")"
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-64}
# the loop kaiju's server will run on (KAIJU_LOOP, else uvloop when installed): the ceiling gets it too
LOOP="$("$PY" -c 'from kaiju.runtime.loop import choose_loop, loop_factory, loop_name
loop = loop_factory(choose_loop())(); print(loop_name(loop)); loop.close()')"
CEILING_LOOP=()
[[ $LOOP == uvloop ]] && CEILING_LOOP=(uvloop)
command -v wrk >/dev/null || { echo "wrk is not installed: apt-get install -y wrk" >&2; exit 1; }

RUN="$(mktemp -d)"
PID=""
SINK_PID=""
cleanup() { [[ -n $PID ]] && kill "$PID" 2>/dev/null; [[ -n $SINK_PID ]] && kill "$SINK_PID" 2>/dev/null; rm -rf "$RUN"; }
trap cleanup EXIT

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

SINK_PORT="$(free_port)"
"$PY" "$ROOT/bench/otlp_sink.py" "$SINK_PORT" >"$RUN/sink.log" 2>&1 & SINK_PID=$!
for _ in $(seq 1 50); do grep -q '^sink=' "$RUN/sink.log" && break; sleep 0.1; done
SINK="$(sed -n 's/^sink=//p' "$RUN/sink.log")"
[[ -n $SINK ]] || { echo "the OTLP sink did not start: $(cat "$RUN/sink.log")" >&2; exit 1; }

wait_up() {  # port
  for _ in $(seq 1 100); do
    if curl -s -o /dev/null -X POST "http://127.0.0.1:$1/public/rpc" \
         -d '{"jsonrpc":"2.0","id":0,"method":"echo.echo","params":{"data":1}}'; then return 0; fi
    sleep 0.1
  done
  echo "server on port $1 did not come up" >&2; return 1
}

start_server() {  # which port
  case $1 in
    ceiling) "$PY" "$PEERS/limit_aiohttp.py" "$2" "${CEILING_LOOP[@]}" >"$RUN/$1.log" 2>&1 & PID=$! ;;
    kaiju) (cd "$ROOT/bench" && exec "$PY" rpc_http_server.py "$2") >"$RUN/$1.log" 2>&1 & PID=$! ;;
    kaiju+metrics) (cd "$ROOT/bench" && exec "$PY" rpc_http_server.py "$2" metrics) >"$RUN/$1.log" 2>&1 & PID=$! ;;
    kaiju+mw) (cd "$ROOT/bench" && exec "$PY" rpc_http_server.py "$2" middleware) >"$RUN/$1.log" 2>&1 & PID=$! ;;
    kaiju+limit) (cd "$ROOT/bench" && exec "$PY" rpc_http_server.py "$2" ratelimit) >"$RUN/$1.log" 2>&1 & PID=$! ;;
    kaiju+trace0.1) (cd "$ROOT/bench" && exec "$PY" rpc_http_server.py "$2" trace:0.1 "$SINK") >"$RUN/$1.log" 2>&1 & PID=$! ;;
    kaiju+trace1.0) (cd "$ROOT/bench" && exec "$PY" rpc_http_server.py "$2" trace:1.0 "$SINK") >"$RUN/$1.log" 2>&1 & PID=$! ;;
    kaiju-tools) (cd "$PEERS/kaiju_tools_app" && exec "$PEER_PY" run.py -e PEER_PORT="$2") >"$RUN/$1.log" 2>&1 & PID=$! ;;
  esac
  wait_up "$2"
  if [[ $1 == kaiju* && $1 != kaiju-tools ]]; then  # it prints its loop once serving (kaiju-tools does not)
    for _ in $(seq 1 50); do grep -q '^loop=' "$RUN/$1.log" && break; sleep 0.1; done
    grep -qx "loop=$LOOP" "$RUN/$1.log" || { echo "kaiju's server is not on $LOOP: $(cat "$RUN/$1.log")" >&2; return 1; }
  fi
}

stop_server() {
  kill -TERM "$PID" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$PID" 2>/dev/null || true
  wait "$PID" 2>/dev/null || true
  PID=""
}

measure() {  # which -> prints "rps=... bad=... errors=... p50_ms=... p99_ms=..."
  local port
  port="$(free_port)"
  start_server "$1" "$port"
  RPC_METHOD=echo.echo wrk -t1 -c"$CONNECTIONS" -d2s -s "$PEERS/rpc_echo.lua" "http://127.0.0.1:$port/public/rpc" >/dev/null
  RPC_METHOD=echo.echo wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" -s "$PEERS/rpc_echo.lua" "http://127.0.0.1:$port/public/rpc" | grep '^rps='
  stop_server
}

declare -A BEST LINE
SERVERS=(ceiling kaiju kaiju+metrics kaiju+mw kaiju+limit kaiju+trace0.1 kaiju+trace1.0 kaiju-tools)
for which in "${SERVERS[@]}"; do BEST[$which]=0; LINE[$which]=""; done
for round in $(seq 1 "$ROUNDS"); do
  for which in "${SERVERS[@]}"; do
    line="$(measure "$which")"
    echo "round $round  $(printf '%-14s' "$which") $line"
    rps="$(sed -E 's/^rps=([0-9]+).*/\1/' <<<"$line")"
    if (( rps > BEST[$which] )); then BEST[$which]=$rps; LINE[$which]=$line; fi
  done
done

echo
echo "JSON-RPC echo over HTTP, wrk -t1 -c$CONNECTIONS -d${DURATION}s, best of $ROUNDS rounds"
echo "loop: kaiju $LOOP, ceiling $LOOP, kaiju-tools its own (run.py)"
for which in kaiju kaiju+metrics kaiju+mw kaiju+limit kaiju+trace0.1 kaiju+trace1.0 kaiju-tools ceiling; do printf '%-14s %s\n' "$which" "${LINE[$which]}"; done
awk -v k="${BEST[kaiju]}" -v m="${BEST[kaiju+metrics]}" -v w="${BEST[kaiju+mw]}" -v t="${BEST[kaiju-tools]}" -v c="${BEST[ceiling]}" \
    -v l="${BEST[kaiju+limit]}" \
    -v t1="${BEST[kaiju+trace0.1]}" -v t2="${BEST[kaiju+trace1.0]}" 'BEGIN {
  printf "kaiju/kaiju-tools = %.2fx (target >= 1.7x)\n", k / t
  printf "kaiju/ceiling     = %.0f%% (target >= 90%%)\n", 100 * k / c
  printf "metrics cost      = %.1f%% of kaiju'"'"'s rps (target < 5%%)\n", 100 * (k - m) / k
  printf "no-op middleware  = %.1f%% of kaiju'"'"'s rps\n", 100 * (k - w) / k
  printf "one rate limit    = %.1f%% of kaiju'"'"'s rps (target <= 10%%)\n", 100 * (k - l) / k
  printf "tracing at 0.1    = %.1f%% of kaiju'"'"'s rps (target <= 5%%)\n", 100 * (k - t1) / k
  printf "tracing at 1.0    = %.1f%% of kaiju'"'"'s rps (two spans per request, exported)\n", 100 * (k - t2) / k
}'
