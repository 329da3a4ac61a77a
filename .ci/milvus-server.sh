# A Milvus server for the tests, sourced by .ci/run (bash). PyPI's `milvus` package ships
# the standalone server (embedded etcd, local storage); it goes into a virtual environment
# of its own, never the project's (whose pins it would disturb). Functions:
#   milvus_start   install (once) and start it on 127.0.0.1 in the background; never fails
#   milvus_wait    wait, bounded, until it answers; exports SONICSEARCH_MILVUS_URI
#   milvus_stop    stop it (SIGTERM, then SIGKILL after a grace period) and remove its data
# A server that does not install, start or answer only makes the Milvus-server tests skip,
# saying why (tests/fixtures/milvus_targets.py); CI goes on.

MILVUS_VERSION=2.3.5
MILVUS_VENV=${MILVUS_VENV:-$HOME/.venvs/milvus-server}
MILVUS_PORT=${MILVUS_PORT:-19530}
MILVUS_WAIT_S=${MILVUS_WAIT_S:-180}
MILVUS_PID=""
MILVUS_DATA=""

milvus_start() {
    if ! { [ -x "$MILVUS_VENV/bin/milvus-server" ] \
            && "$MILVUS_VENV/bin/python" -c "import milvus" 2>/dev/null; }; then
        { python3 -m venv "$MILVUS_VENV" \
            && "$MILVUS_VENV/bin/python" -m pip install -q "milvus==$MILVUS_VERSION"; } \
            || { echo "milvus server: did not install; its tests will be skipped"; return 0; }
    fi
    MILVUS_DATA=$(mktemp -d "${TMPDIR:-/tmp}/sonicsearch-milvus.XXXXXX")
    # setsid: its own process group (the wrapper and the milvus binary it starts), so that
    # milvus_stop reaches both. The client and the server's components talk over loopback
    # (the ip settings); Milvus 2.3 has no listen-address setting, so its ports (19530 and
    # its internal ones) listen on every interface of the CI machine while it runs.
    setsid "$MILVUS_VENV/bin/milvus-server" --data "$MILVUS_DATA" --proxy-port "$MILVUS_PORT" \
        --extra-config proxy.ip=127.0.0.1 --extra-config rootCoord.ip=127.0.0.1 \
        --extra-config queryCoord.ip=127.0.0.1 --extra-config queryNode.ip=127.0.0.1 \
        --extra-config indexNode.ip=127.0.0.1 --extra-config dataCoord.ip=127.0.0.1 \
        --extra-config dataNode.ip=127.0.0.1 \
        >"$MILVUS_DATA/server.log" 2>&1 </dev/null &
    MILVUS_PID=$!
    MILVUS_STARTED=$(date +%s)
    export SONICSEARCH_MILVUS_URI="http://127.0.0.1:$MILVUS_PORT"
}

milvus_wait() {
    [ -n "$MILVUS_PID" ] || return 0
    local python=${1:-python}
    if timeout "$MILVUS_WAIT_S" "$python" - "$SONICSEARCH_MILVUS_URI" "$MILVUS_PID" <<'EOF'
import os, sys, time
from pymilvus import MilvusClient
while True:
    try:
        MilvusClient(sys.argv[1], timeout=5).list_collections(timeout=5)
        break
    except Exception:
        try:
            os.kill(int(sys.argv[2]), 0)  # still starting, or gone (no use waiting)?
        except ProcessLookupError:
            sys.exit("the server exited")
        time.sleep(1)
EOF
    then
        echo "milvus server: answering at $SONICSEARCH_MILVUS_URI after" \
            "$(( $(date +%s) - MILVUS_STARTED )) s"
    else
        echo "milvus server: no answer within $MILVUS_WAIT_S s; its tests will be skipped." \
            "Last lines of its log:"
        tail -n 20 "$MILVUS_DATA/server.log" || true
    fi
}

milvus_stop() {
    [ -n "$MILVUS_PID" ] || return 0
    kill -TERM -- "-$MILVUS_PID" 2>/dev/null || true
    local i
    for i in $(seq 20); do  # it ignores SIGTERM for a while: 10 s, then SIGKILL
        kill -0 -- "-$MILVUS_PID" 2>/dev/null || break
        sleep 0.5
    done
    kill -KILL -- "-$MILVUS_PID" 2>/dev/null || true
    wait "$MILVUS_PID" 2>/dev/null || true
    rm -rf "$MILVUS_DATA"
    MILVUS_PID=""
}
