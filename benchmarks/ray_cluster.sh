#!/bin/bash
# Ray beyond one process, measured: a two-node Ray cluster on this machine (`ray start
# --head` and a second node joining it on 127.0.0.2, 1 CPU each, a token of their own),
# `build-index --ray --ray-address` on it with one embedding worker of the second node
# SIGKILLed while it embeds, then the same build in one process, and whether both indexes
# hold the same vectors. The nodes are stopped by their process groups (never `ray stop`,
# which would stop every Ray of the machine).
#
#   benchmarks/ray_cluster.sh AUDIO_DIR [WORK_DIR]     # python / ray: the active venv's
set -u
AUDIO=$1; T=${2:-$(mktemp -d)}; KILL_AFTER_S=${KILL_AFTER_S:-3}
PY=$(command -v python); RAY=$(dirname "$PY")/ray; IP=127.0.0.2
rm -rf "$T/idx-ray" "$T/idx-local"; mkdir -p "$T"
PORT=$($PY -c "import socket; s=socket.socket(); s.bind(('$IP',0)); print(s.getsockname()[1])")
RAY_AUTH_TOKEN=$($PY -c "import secrets; print(secrets.token_hex(32))")
export RAY_AUTH_MODE=token RAY_AUTH_TOKEN RAY_gcs_server_port_wait_time_s=180
alive() { $PY -c "import ray; ray.init(address='$IP:$PORT', log_to_driver=False)
print(sum(n['Alive'] for n in ray.nodes()))" 2>/dev/null | tail -1; }
t0=$(date +%s)
setsid $RAY start --block --head --port "$PORT" --num-cpus 1 --include-dashboard false \
    --node-ip-address $IP --temp-dir "$T/ray" >"$T/head.log" 2>&1 &
HEAD=$!
until [ "$(alive)" = 1 ]; do sleep 2; done
setsid $RAY start --block --address "$IP:$PORT" --num-cpus 1 --node-ip-address $IP \
    >"$T/node2.log" 2>&1 &
NODE2=$!
until [ "$(alive)" = 2 ]; do sleep 2; done
echo "a cluster of 2 nodes up after $(( $(date +%s) - t0 )) s"
(   # the killer: node 2's embedding worker, KILL_AFTER_S after its model has loaded
    while true; do
        V=$(ps -eo pid,sid,args | awk -v s=$NODE2 '$2==s && /ray::MapWorker/ && !/__init__/ {print $1; exit}')
        [ -n "$V" ] && break; sleep 0.2
    done
    sleep "$KILL_AFTER_S"; echo "SIGKILL to worker $V: $(ps -o args= -p "$V" | cut -c1-60)"
    kill -9 "$V"
) &
KILLER=$!
t0=$(date +%s.%N)
$PY -m sonicsearch build-index "$AUDIO" --index "$T/idx-ray" --ray --ray-address "$IP:$PORT" \
    --ray-workers 2 2>&1 | tr '\r' '\n' | grep -v "^embedding: \|^ *$" | tail -2
echo "ray build, wall s: $(echo "$(date +%s.%N) - $t0" | bc)"
kill "$KILLER" 2>/dev/null
for P in $NODE2 $HEAD; do kill -TERM -- "-$P" 2>/dev/null; done; sleep 10
for P in $NODE2 $HEAD; do kill -KILL -- "-$P" 2>/dev/null; done
t0=$(date +%s.%N)
$PY -m sonicsearch build-index "$AUDIO" --index "$T/idx-local" 2>&1 | tr '\r' '\n' \
    | grep -v "^embedding: \|^ *$" | tail -1
echo "one-process build, wall s: $(echo "$(date +%s.%N) - $t0" | bc)"
$PY -c "import numpy as np, sys
a, b = (np.load(f'{sys.argv[1]}/{i}/gen-000001/vectors.npy') for i in ('idx-ray', 'idx-local'))
print('the same vectors as the one-process build:', a.shape == b.shape and np.allclose(a, b, atol=1e-5))" "$T"
