# Helpers the benchmark scripts (benches/compare.sh, scripts/bench-feature.sh,
# scripts/bench-kafka.sh) share: the knobs they all read, building the release binary,
# free loopback ports, waiting for a port, a process's CPU ticks and memory from /proc,
# stopping a process within 5 s, and stopping every process a script started (append its
# pid to PIDS) when the script ends, however it ends. Sourced, not run; a script that
# wants another default for a knob sets it before sourcing (RATE=${RATE:-50000}).

# The load knobs (see each script's header).
RUNS=${RUNS:-3}
DURATION=${DURATION:-10}
RATE=${RATE:-0}
SPR=${SPR:-1000}
CONCURRENCY=${CONCURRENCY:-4}
SKIP_BUILD=${SKIP_BUILD:-0}

PIDS=()
stop_all() {
    for pid in "${PIDS[@]:-}"; do
        [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    done
    sleep 0.5
    for pid in "${PIDS[@]:-}"; do
        [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
    done
}
# An interrupted script must stop too, not carry on after the handler: exit with the
# shell's status for the signal, and the EXIT trap (stop_all, or a script's own cleanup
# that calls it) stops what it started.
trap stop_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

build_cerflow() { # builds target/release/cerflow unless SKIP_BUILD=1
    if [ "$SKIP_BUILD" != 1 ]; then
        log "building cerflow (release)"
        (cd "$ROOT" && cargo build --release --quiet --bin cerflow)
    fi
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_port() { # port seconds
    local deadline=$((SECONDS + $2))
    while [ $SECONDS -lt $deadline ]; do
        if python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$1),0.2)" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}

cpu_ticks() { # pid -> utime+stime in clock ticks
    python3 - "$1" <<'EOF'
import sys
s = open(f"/proc/{sys.argv[1]}/stat").read()
f = s[s.rindex(")") + 2:].split()
print(int(f[11]) + int(f[12]))
EOF
}

hwm_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

stop() { # pid
    kill "$1" 2>/dev/null || true
    for _ in $(seq 1 50); do
        kill -0 "$1" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -9 "$1" 2>/dev/null || true
}
