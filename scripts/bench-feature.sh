#!/usr/bin/env bash
# What a feature costs cerflow, measured end to end with `cerflow loadgen` against the
# release binary, the feature on against the same run with it off:
#
#   customers (issue 10): users and value at risk. Spans carry a user id in enduser.id
#     from USERS distinct users and an order value in app.order.value; "on" is
#     `loadgen --print-config --order-value` (the default users.keys include enduser.id,
#     and a value rule per journey), "off" adds `users: { keys: [] }` and no value rules.
#     Speed target: on no more than 15% below off. Memory: 20 journeys x 50 cohorts,
#     MEM_RATE (default 100,000) spans/s; target peak under 200 MiB, flat.
#   traces (issue 12): trace assembly. Every request is a trace of 20 spans (a SERVER
#     span and 19 CLIENT calls, `loadgen --dependencies 19`); "on" is the default config
#     (traces.enabled: true), "off" adds `traces: { enabled: false }`. Speed target: on
#     no more than 30% below off. Memory: MEM_RATE (default 50,000) spans/s; target peak
#     under 300 MiB, flat.
#
# 1. Speed: spans per CPU-second of cerflow, on and off alternating, RUNS times each;
#    medians. 2. Memory: RSS every 2 s and the peak (VmHWM) over MEM_SECONDS with the
#    feature on, and cerflow_window_state_bytes and cerflow_trace_buffer_bytes at the end.
#    MEM_OFF=1 runs the same load with it off first, for comparison.
#
# Everything listens on 127.0.0.1 on free ports; every process started here is stopped
# on exit (trap). Results: $OUT/results.md, loadgen summaries as JSON, RSS curves as CSV.
#
# Usage: scripts/bench-feature.sh customers|traces   (about 12 minutes with the defaults)
# Knobs: RUNS=3 DURATION=10 RATE=0 SPR=1000 CONCURRENCY=4 USERS=100000
#        MEM_SECONDS=600 MEM_RATE MEM_OFF=0 SKIP_SPEED=1 SKIP_MEMORY=1
#        OUT=target/bench-FEATURE SKIP_BUILD=1 (measure target/release/cerflow as it is)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
FEATURE=${1:-}
case "$FEATURE" in
customers)
    LOAD_ARGS=(--users "${USERS:-100000}" --order-value)
    MEM_ARGS=(--journeys 20 --cohorts 50)
    SPEED_TARGET=0.15
    MEM_TARGET_MIB=200
    ;;
traces)
    LOAD_ARGS=(--dependencies 19)
    MEM_ARGS=()
    MEM_RATE=${MEM_RATE:-50000}
    SPEED_TARGET=0.30
    MEM_TARGET_MIB=300
    ;;
*)
    echo "usage: $0 customers|traces" >&2
    exit 2
    ;;
esac
MEM_SECONDS=${MEM_SECONDS:-600}
MEM_RATE=${MEM_RATE:-100000}
OUT=${OUT:-$ROOT/target/bench-$FEATURE}
CERFLOW=$ROOT/target/release/cerflow

mkdir -p "$OUT"
rm -f "$OUT"/*.json "$OUT"/*.log "$OUT"/*.yaml "$OUT"/results.tsv "$OUT"/results.md "$OUT"/rss-*.csv
log() { echo "bench-feature $FEATURE: $*" >&2; }
# RUNS DURATION RATE SPR CONCURRENCY SKIP_BUILD, build_cerflow, ports, /proc, stopping.
. "$ROOT/scripts/bench-lib.sh"
build_cerflow

config() { # on|off journeys grpc prom -> file
    local f="$OUT/cerflow-$1-$2j.yaml"
    case "$FEATURE-$1" in
    customers-on) "$CERFLOW" loadgen --journeys "$2" --print-config --order-value > "$f" ;;
    customers-off)
        "$CERFLOW" loadgen --journeys "$2" --print-config > "$f"
        printf 'users:\n  keys: []\n' >> "$f"
        ;;
    traces-on) "$CERFLOW" loadgen --journeys "$2" --print-config > "$f" ;;
    traces-off)
        "$CERFLOW" loadgen --journeys "$2" --print-config > "$f"
        printf 'traces:\n  enabled: false\n' >> "$f"
        ;;
    esac
    cat >> "$f" <<CFG
receivers:
  otlp:
    protocols:
      grpc: { endpoint: "127.0.0.1:$3" }
      http: { endpoint: "127.0.0.1:$(free_port)" }
exporters:
  prometheus: { endpoint: "127.0.0.1:$4" }
slo:
  checkpoint: { enabled: false }
CFG
    echo "$f"
}

PID=""; GRPC=""; PROM=""
start() { # on|off journeys
    GRPC=$(free_port); PROM=$(free_port)
    "$CERFLOW" --config "$(config "$1" "$2" "$GRPC" "$PROM")" --log-level warn > "$OUT/cerflow-$1.log" 2>&1 &
    PID=$!
    PIDS+=("$PID")
    if ! wait_port "$GRPC" 20; then
        log "cerflow ($1) did not open its gRPC port; see $OUT/cerflow-$1.log"
        exit 1
    fi
    sleep 0.5
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
{
    echo "- machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs), $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo); $(date -u '+%Y-%m-%d %H:%M UTC')"
} >> "$OUT/results.md"

# ------------------------------------------------------------------ 1. speed
if [ "${SKIP_SPEED:-0}" != 1 ]; then
log "speed: ${RUNS} x (on, off), ${DURATION}s each, rate ${RATE} (0 = unlimited), loadgen ${LOAD_ARGS[*]}"
for r in $(seq 1 "$RUNS"); do
    for mode in on off; do
        start "$mode" 3
        before=$(cpu_ticks "$PID")
        timeout $((DURATION + 60)) "$CERFLOW" loadgen --endpoint "127.0.0.1:$GRPC" --rate "$RATE" \
            --duration "${DURATION}s" --spans-per-request "$SPR" --concurrency "$CONCURRENCY" \
            "${LOAD_ARGS[@]}" --quiet --max-errors 1000000 \
            --summary-json "$OUT/speed-$mode-$r.json" > "$OUT/speed-$mode-$r.loadgen.log" 2>&1 || true
        sleep 1 # let queues drain
        after=$(cpu_ticks "$PID")
        hwm=$(hwm_kib "$PID")
        stop "$PID"
        python3 - "$OUT/speed-$mode-$r.json" "$mode" $((after - before)) "$hwm" "$(getconf CLK_TCK)" >> "$OUT/results.tsv" <<'PY'
import json, sys
path, mode, ticks, hwm, hz = sys.argv[1:]
s = json.load(open(path))
cpu = int(ticks) / int(hz)
acc = s["spans_accepted"]
print("\t".join(map(str, [mode, acc, s["spans_refused"] + s["spans_failed"], f"{cpu:.2f}",
      f"{acc / cpu if cpu else 0:.0f}", f"{int(hwm) / 1024:.1f}"])))
PY
        log "$(tail -1 "$OUT/results.tsv")"
    done
done
python3 - "$OUT/results.tsv" "$FEATURE" "$SPEED_TARGET" >> "$OUT/results.md" <<'PY'
import sys, statistics as st
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
feature, target = sys.argv[2], float(sys.argv[3])
print(f"\n| {feature} | runs | spans accepted (median) | not accepted | CPU s | spans per CPU-second | CPU us per span | peak RSS MiB |")
print("|---|---|---|---|---|---|---|---|")
med = {}
for mode in ("off", "on"):
    v = [r for r in rows if r[0] == mode]
    if not v:
        continue
    m = lambda i: st.median(float(x[i]) for x in v)
    med[mode] = m(4)
    print(f"| {mode} | {len(v)} | {m(1):,.0f} | {m(2):.0f} | {m(3):.2f} | {m(4):,.0f} | {1e6 / m(4) if m(4) else 0:.2f} | {m(5):.1f} |")
    print(f"<!-- {mode} runs, spans per CPU-second: {', '.join(f'{float(x[4]):,.0f}' for x in v)} -->")
if med.get("off"):
    d = 1 - med["on"] / med["off"]
    print(f"\n- with {feature} on: {100 * d:.1f}% fewer spans per CPU-second than off (target: at most {100 * target:.0f}%): {'met' if d <= target else 'NOT met'}")
PY
fi

# ------------------------------------------------------------------ 2. memory
memory() { # on|off
    start "$1" 20
    local pid=$PID
    ( timeout $((MEM_SECONDS + 60)) "$CERFLOW" loadgen --endpoint "127.0.0.1:$GRPC" --rate "$MEM_RATE" \
        --duration "${MEM_SECONDS}s" "${MEM_ARGS[@]}" --spans-per-request "$SPR" \
        "${LOAD_ARGS[@]}" --quiet --max-errors 1000000 \
        --summary-json "$OUT/memory-$1.json" > "$OUT/memory-$1.loadgen.log" 2>&1 || true ) &
    local lg=$!
    PIDS+=("$lg")
    echo "seconds,rss_mib" > "$OUT/rss-$1.csv"
    local t0=$SECONDS
    while kill -0 "$lg" 2>/dev/null; do
        echo "$((SECONDS - t0)),$(awk "BEGIN {printf \"%.1f\", $(rss_kib "$pid")/1024}")" >> "$OUT/rss-$1.csv"
        sleep 2
    done
    local state
    state=$(python3 -c "
import urllib.request
t = urllib.request.urlopen('http://127.0.0.1:$PROM/metrics', timeout=10).read().decode()
g = lambda m: next((l.split()[-1] for l in t.splitlines() if l.split()[:1] == [m]), 'n/a')
print(g('cerflow_window_state_bytes') + ',' + g('cerflow_trace_buffer_bytes'))" || echo n/a,n/a)
    local hwm
    hwm=$(hwm_kib "$pid")
    stop "$pid"
    python3 - "$OUT/rss-$1.csv" "$hwm" "$OUT/memory-$1.json" "$1" "$state" "$FEATURE" "$MEM_TARGET_MIB" "${MEM_ARGS[*]} ${LOAD_ARGS[*]}" <<'PY' | tee -a "$OUT/results.md"
import csv, json, sys
rows = list(csv.DictReader(open(sys.argv[1])))
s = json.load(open(sys.argv[3]))
v = [float(r["rss_mib"]) for r in rows]
step = max(1, len(v) // 40)
mib = lambda x: f"{float(x) / 2**20:.1f} MiB" if x != "n/a" else x
state, traces = (sys.argv[5].split(",") + ["n/a"])[:2]
peak = int(sys.argv[2]) / 1024
print(f"\n- memory, {sys.argv[6]} {sys.argv[4]}: loadgen {sys.argv[8]} at {int(s['target_rate'])} spans/s for {s['elapsed_s']:.0f}s "
      f"({s['spans_accepted']} spans accepted, {s['spans_refused'] + s['spans_failed']} not): peak RSS {peak:.1f} MiB "
      f"(target under {sys.argv[7]} MiB: {'met' if peak < float(sys.argv[7]) else 'NOT met'}); "
      f"at the end window state {mib(state)}, trace buffer {mib(traces)}; RSS every {2 * step} s (MiB), min {min(v):.0f} / max {max(v):.0f}: "
      + " ".join(f"{x:.0f}" for x in v[::step]))
PY
}
if [ "${SKIP_MEMORY:-0}" != 1 ]; then
    [ "${MEM_OFF:-0}" = 1 ] && memory off
    memory on
fi
echo "- load averages (1/5/15 min) before: $LOAD_BEFORE; after: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/results.md"
cat "$OUT/results.md"
log "results in $OUT/results.md"
