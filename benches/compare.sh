#!/usr/bin/env bash
# cerflow, the OpenTelemetry Collector with its spanmetrics connector, and rotel side by
# side, on one machine, with the same load generator and the same payload (realistic
# ~430-byte spans, 1000 per request, OTLP/gRPC).
#
# For each collector and each run: start it fresh on free loopback ports, send load for
# DURATION seconds with `cerflow loadgen`, and read from /proc the collector's CPU
# seconds (utime+stime) and peak RSS (VmHWM). Reports spans accepted, CPU seconds,
# spans per CPU-second, peak RSS, medians over RUNS runs, and cerflow's ratios to the
# Collector and to rotel.
# Then, for cerflow only: the highest rate it sustains with zero refusals, its
# freshness (span sent -> its cohort on /metrics), and RSS with 20 journeys x 50 cohorts.
#
# Everything listens on 127.0.0.1 only, every step is bounded in time, and every process
# started here is stopped on exit (trap).
#
# Usage: benches/compare.sh            (about 8 minutes with the defaults)
# Knobs (environment): RUNS=3 DURATION=10 RATE=0 (0 = as fast as accepted) SPR=1000
#   CONCURRENCY=4 MAX_RATE_STEPS="200000 400000 600000 800000 1000000 1300000 1600000"
#   STEP_SECONDS=5 MEM_SECONDS=60 (600 for the 10-minute memory run) MEM_RATE=200000
#   OUT=target/compare PYTHON=python3.11 ROTEL_VERSION=0.0.1a15
#   OTELCOL_BIN (default: the Collector scripts/test.sh built, target/otelcol/otelcol)
#   SKIP_OTELCOL=1 SKIP_ROTEL=1 SKIP_COMPARE=1 SKIP_RATE=1 SKIP_FRESHNESS=1 SKIP_MEMORY=1 (SKIP_EXTRAS=1: the last three)
#   SKIP_GRPC=1 (no gRPC rows) SKIP_JSON=1 (no OTLP/HTTP JSON rows)
#   CERFLOW_COLLECTOR=path: the cerflow binary measured (default: the one built here, which
#   also runs the load generator), e.g. an older build for before/after figures
#   SKIP_BUILD=1: use target/release/cerflow as it is (no cargo build)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
MAX_RATE_STEPS=${MAX_RATE_STEPS:-"200000 400000 600000 800000 1000000 1300000 1600000"}
STEP_SECONDS=${STEP_SECONDS:-5}
MEM_SECONDS=${MEM_SECONDS:-60}
MEM_RATE=${MEM_RATE:-200000}
if [ "${SKIP_EXTRAS:-0}" = 1 ]; then SKIP_RATE=1; SKIP_FRESHNESS=1; SKIP_MEMORY=1; fi
OUT=${OUT:-$ROOT/target/compare}
PYTHON=${PYTHON:-python3.11}
ROTEL_VERSION=${ROTEL_VERSION:-0.0.1a15}
VENV=${VENV:-$ROOT/target/rotel-venv}
CERFLOW=$ROOT/target/release/cerflow
CERFLOW_COLLECTOR=${CERFLOW_COLLECTOR:-$CERFLOW}

mkdir -p "$OUT"
rm -f "$OUT"/*.json "$OUT"/*.log "$OUT"/results.tsv "$OUT"/results.md "$OUT"/rss-*.csv

log() { echo "compare: $*" >&2; }

# RUNS DURATION RATE SPR CONCURRENCY SKIP_BUILD, build_cerflow, free_port, wait_port,
# cpu_ticks, hwm_kib, rss_kib, stop: shared with the other benchmark scripts.
. "$ROOT/scripts/bench-lib.sh"

# ---------------------------------------------------------------- build and install
build_cerflow

ROTEL=""
if [ "${SKIP_ROTEL:-0}" != 1 ]; then
    if [ ! -x "$VENV/bin/pip" ]; then
        log "creating $VENV with $PYTHON"
        "$PYTHON" -m venv "$VENV"
    fi
    ROTEL=$(ls "$VENV"/lib/python3*/site-packages/rotel/rotel-agent 2>/dev/null | head -1 || true)
    if [ -z "$ROTEL" ]; then
        log "installing rotel==$ROTEL_VERSION"
        "$VENV/bin/pip" install --quiet "rotel==$ROTEL_VERSION"
        ROTEL=$(ls "$VENV"/lib/python3*/site-packages/rotel/rotel-agent | head -1)
    fi
fi

# ------------------------------------- the OpenTelemetry Collector with spanmetrics
# What a user would run instead of cerflow: OTLP receiver -> spanmetrics connector with
# cerflow's two cohort keys as dimensions -> prometheus exporter. The binary is the one
# scripts/test.sh builds from tests/otelcol (pinned modules).
OTELCOL=""
if [ "${SKIP_OTELCOL:-0}" != 1 ]; then
    OTELCOL=${OTELCOL_BIN:-$ROOT/target/otelcol/otelcol}
    if [ ! -x "$OTELCOL" ]; then
        log "no Collector at $OTELCOL: run scripts/test.sh once (it builds tests/otelcol), set OTELCOL_BIN, or SKIP_OTELCOL=1"
        exit 1
    fi
fi

otelcol_config() { # grpc http prom -> file
    local f="$OUT/otelcol-spanmetrics.yaml"
    cat > "$f" <<EOF
receivers:
  otlp:
    protocols:
      grpc: { endpoint: "127.0.0.1:$1" }
      http: { endpoint: "127.0.0.1:$2" }
connectors:
  span_metrics:
    dimensions:
      - name: cloud.region
      - name: app.plan.tier
    # As often as cerflow derives its SLIs (evaluation_interval 1s).
    metrics_flush_interval: 1s
exporters:
  prometheus:
    endpoint: "127.0.0.1:$3"
service:
  telemetry:
    metrics: { level: none }
    logs: { level: warn }
  pipelines:
    traces: { receivers: [otlp], exporters: [span_metrics] }
    metrics: { receivers: [span_metrics], exporters: [prometheus] }
EOF
    echo "$f"
}

# A config like a real deployment's: 3 journeys, 2 cohort keys, default windows.
config() { # journeys grpc http prom -> file
    local f="$OUT/cerflow-$1j.yaml"
    "$CERFLOW" loadgen --journeys "$1" --print-config > "$f"
    cat >> "$f" <<EOF
receivers:
  otlp:
    protocols:
      grpc: { endpoint: "127.0.0.1:$2" }
      http: { endpoint: "127.0.0.1:$3" }
exporters:
  prometheus: { endpoint: "127.0.0.1:$4" }
EOF
    echo "$f"
}

COLLECTOR_PID=""
COLLECTOR_GRPC=""
COLLECTOR_HTTP=""
COLLECTOR_PROM=""
start_collector() { # name [journeys]
    local grpc http prom
    grpc=$(free_port); http=$(free_port); prom=$(free_port)
    case "$1" in
        cerflow)
            local cfg
            cfg=$(config "${2:-3}" "$grpc" "$http" "$prom")
            "$CERFLOW_COLLECTOR" --config "$cfg" --log-level warn > "$OUT/cerflow.log" 2>&1 &
            ;;
        otelcol)
            "$OTELCOL" --config "file:$(otelcol_config "$grpc" "$http" "$prom")" > "$OUT/otelcol.log" 2>&1 &
            ;;
        rotel)
            "$ROTEL" start --exporter blackhole \
                --otlp-grpc-endpoint "127.0.0.1:$grpc" --otlp-http-endpoint "127.0.0.1:$http" \
                --pid-file "$OUT/rotel.pid" --log-file "$OUT/rotel-agent.log" > "$OUT/rotel.log" 2>&1 &
            ;;
    esac
    COLLECTOR_PID=$!
    PIDS+=("$COLLECTOR_PID")
    COLLECTOR_GRPC=$grpc
    COLLECTOR_HTTP=$http
    COLLECTOR_PROM=$prom
    if ! wait_port "$grpc" 20; then
        log "$1 did not open its gRPC port; see $OUT/$1.log"
        exit 1
    fi
    sleep 0.5
}

# One measured run: name label extra-loadgen-args...
measure() {
    local name=$1 label=$2
    shift 2
    start_collector "$name"
    local pid=$COLLECTOR_PID
    local before after
    before=$(cpu_ticks "$pid")
    # MEASURE_HTTP=1: the load goes to the OTLP/HTTP port (the caller picks the protocol).
    local endpoint="127.0.0.1:$COLLECTOR_GRPC"
    [ "${MEASURE_HTTP:-0}" = 1 ] && endpoint="http://127.0.0.1:$COLLECTOR_HTTP"
    timeout $((DURATION + 60)) "$CERFLOW" loadgen --endpoint "$endpoint" \
        --rate "$RATE" --duration "${DURATION}s" --spans-per-request "$SPR" --concurrency "$CONCURRENCY" \
        --quiet --max-errors 1000000 --summary-json "$OUT/$label.json" "$@" > "$OUT/$label.loadgen.log" 2>&1 || true
    sleep 1 # let queues drain and batches flush
    after=$(cpu_ticks "$pid")
    local hwm
    hwm=$(hwm_kib "$pid")
    stop "$pid"
    python3 - "$OUT/$label.json" "$name" "$label" $((after - before)) "$hwm" "$(getconf CLK_TCK)" >> "$OUT/results.tsv" <<'EOF'
import json, sys
path, name, label, ticks, hwm, hz = sys.argv[1:]
s = json.load(open(path))
cpu = int(ticks) / int(hz)
acc = s["spans_accepted"]
print("\t".join(map(str, [name, label.rsplit("-", 1)[0], acc, s["spans_refused"] + s["spans_failed"],
      f"{cpu:.2f}", f"{acc / cpu if cpu else 0:.0f}", f"{int(hwm) / 1024:.1f}", f"{s['spans_per_second']:.0f}",
      f"{s['wire_bytes_per_span']:.0f}"])))
EOF
    log "$(tail -1 "$OUT/results.tsv")"
}

# ------------------------------------------------ OTLP/HTTP JSON rows (cerflow, rotel)
# The same spans as OTLP/JSON (`loadgen --protocol http-json`: ~1,020 bytes per span, hex
# ids, integer enums, 64-bit integers as strings), plain and gzip, to each collector's
# OTLP/HTTP port; one run of each per round, beside the gRPC rows.
json_rows() { # round
    MEASURE_HTTP=1 measure cerflow "cerflow-json-$1" --protocol http-json
    [ -n "$ROTEL" ] && MEASURE_HTTP=1 measure rotel "rotel-json-$1" --protocol http-json
    MEASURE_HTTP=1 measure cerflow "cerflow-json-gzip-$1" --protocol http-json --gzip
    [ -n "$ROTEL" ] && MEASURE_HTTP=1 measure rotel "rotel-json-gzip-$1" --protocol http-json --gzip
    return 0
}

# The JSON targets (issue 17), from the medians in results.tsv.
json_summary() {
    python3 - "$OUT/results.tsv" <<'EOF'
import sys, statistics as st
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
per_cpu = {}
for r in rows:
    per_cpu.setdefault(r[1], []).append(float(r[5]))
ns = {case: 1e9 / st.median(v) for case, v in per_cpu.items() if st.median(v)}
def line(case, limit):
    if case in ns:
        print(f"- {case}: {ns[case]:,.0f} ns CPU per span (target <= {limit:,}): {'met' if ns[case] <= limit else 'NOT met'}")
line("cerflow-json", 1500)
line("cerflow-json-gzip", 2000)
for a, b in [("cerflow-json", "rotel-json"), ("cerflow-json-gzip", "rotel-json-gzip")]:
    if a in ns and b in ns:
        r = ns[a] / ns[b]
        print(f"- {a} / {b}: CPU per span ratio {r:.3f} (target <= 0.333): {'met' if r <= 1 / 3 else 'NOT met'}")
EOF
}

if [ "${SKIP_COMPARE:-0}" != 1 ]; then
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
log "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs), $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
log "load: ${DURATION}s per run, rate ${RATE} (0 = unlimited), ${SPR} spans/request, ${CONCURRENCY} in flight, ${RUNS} runs"
log "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq 1 "$RUNS"); do
    if [ "${SKIP_GRPC:-0}" != 1 ]; then
        measure cerflow "cerflow-grpc-$r"
        [ -n "$OTELCOL" ] && measure otelcol "otelcol-grpc-$r"
        [ -n "$ROTEL" ] && measure rotel "rotel-grpc-$r"
        measure cerflow "cerflow-grpc-gzip-$r" --gzip
        [ -n "$OTELCOL" ] && measure otelcol "otelcol-grpc-gzip-$r" --gzip
        [ -n "$ROTEL" ] && measure rotel "rotel-grpc-gzip-$r" --gzip
    fi
    [ "${SKIP_JSON:-0}" != 1 ] && json_rows "$r"
done
log "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

python3 - "$OUT/results.tsv" > "$OUT/results.md" <<'EOF'
import sys, statistics as st
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
groups = {}
for name, case, acc, lost, cpu, per_cpu, rss, rate, wire in rows:
    groups.setdefault(case, []).append((int(acc), int(lost), float(cpu), float(per_cpu), float(rss), float(rate), float(wire)))
print("| case | runs | spans accepted (median) | not accepted | collector CPU s | spans per CPU-second | CPU us per span | peak RSS MiB | sent spans/s | wire bytes/span |")
print("|---|---|---|---|---|---|---|---|---|---|")
med = {}
for case, v in groups.items():
    m = lambda i: st.median(x[i] for x in v)
    med[case] = m(3)
    print(f"| {case} | {len(v)} | {m(0):.0f} | {m(1):.0f} | {m(2):.2f} | {m(3):,.0f} | {1e6 / m(3) if m(3) else 0:.2f} | {m(4):.1f} | {m(5):,.0f} | {m(6):.0f} |")
print()
for a, b in [("cerflow-grpc", "rotel-grpc"), ("cerflow-grpc-gzip", "rotel-grpc-gzip")]:
    if a in med and b in med and med[a] and med[b]:
        print(f"- {a} / {b}: CPU per span ratio {med[b] / med[a]:.3f} (cerflow uses {100 * med[b] / med[a]:.0f}% of rotel's CPU per span; {med[a] / med[b]:.1f}x the spans per CPU-second)")
# cerflow against the Collector + spanmetrics (the issue's target: at most 1/10).
for a, b in [("cerflow-grpc", "otelcol-grpc"), ("cerflow-grpc-gzip", "otelcol-grpc-gzip")]:
    if a in med and b in med and med[a] and med[b]:
        print(f"- {a} / {b}: CPU per span ratio {med[b] / med[a]:.3f} (cerflow uses {100 * med[b] / med[a]:.1f}% of the Collector+spanmetrics' CPU per span; {med[a] / med[b]:.1f}x the spans per CPU-second)")
EOF
echo "- load averages (1/5/15 min) before: $LOAD_BEFORE; after: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) cores)" >> "$OUT/results.md"
json_summary >> "$OUT/results.md"
cat "$OUT/results.md"
fi

# ------------------------------------------- highest rate with zero refusals (cerflow)
if [ "${SKIP_RATE:-0}" != 1 ]; then
start_collector cerflow
best=0
why="every step passed"
for rate in $MAX_RATE_STEPS; do
    timeout $((STEP_SECONDS + 60)) "$CERFLOW" loadgen --endpoint "127.0.0.1:$COLLECTOR_GRPC" --rate "$rate" \
        --duration "${STEP_SECONDS}s" --spans-per-request "$SPR" --concurrency 16 --quiet --max-errors 1000000 \
        --summary-json "$OUT/step-$rate.json" > /dev/null 2>&1 || true
    ok=$(python3 -c "
import json; s = json.load(open('$OUT/step-$rate.json'))
lost = s['spans_refused'] + s['spans_failed']
print(1 if lost == 0 and s['spans_per_second'] >= 0.95 * $rate else 0, int(s['spans_per_second']), lost)")
    set -- $ok
    log "rate $rate: sent $2 spans/s, $3 not accepted"
    if [ "$1" = 1 ]; then
        best=$rate
    else
        if [ "$3" != 0 ]; then
            why="at $rate spans/s cerflow refused or failed $3 spans"
        else
            why="at $rate spans/s the generator, on the same cores, sent only $2 spans/s (no refusals)"
        fi
        break
    fi
done
echo "- highest rate cerflow sustained with zero refusals (steps of ${STEP_SECONDS}s, gRPC, ${SPR} spans/request): $best spans/s; next step: $why" | tee -a "$OUT/results.md"
stop "$COLLECTOR_PID"
fi

# ------------------------------------------------------------- freshness (cerflow)
if [ "${SKIP_FRESHNESS:-0}" != 1 ]; then
start_collector cerflow
timeout 90 "$CERFLOW" loadgen --endpoint "127.0.0.1:$COLLECTOR_GRPC" --rate 100000 --duration 10s \
    --spans-per-request "$SPR" --quiet --max-errors 1000000 --probe-metrics "http://127.0.0.1:$COLLECTOR_PROM/metrics" \
    --summary-json "$OUT/freshness.json" > /dev/null 2>&1 || true
python3 -c "
import json; s = json.load(open('$OUT/freshness.json'))
print('- freshness under 100k spans/s (span of a new cohort sent -> visible on /metrics, evaluation interval 1s):',
      f\"{s['freshness_ms']:.0f} ms\" if s['freshness_ms'] is not None else s['freshness_error'])" | tee -a "$OUT/results.md"
stop "$COLLECTOR_PID"
fi

# ------------------------------------------------ memory: 20 journeys x 50 cohorts
if [ "${SKIP_MEMORY:-0}" != 1 ]; then
start_collector cerflow 20
pid=$COLLECTOR_PID
( timeout $((MEM_SECONDS + 60)) "$CERFLOW" loadgen --endpoint "127.0.0.1:$COLLECTOR_GRPC" --rate "$MEM_RATE" \
    --duration "${MEM_SECONDS}s" --journeys 20 --cohorts 50 --spans-per-request "$SPR" --quiet \
    --max-errors 1000000 --summary-json "$OUT/memory.json" > /dev/null 2>&1 || true ) &
LG=$!
PIDS+=("$LG")
echo "seconds,rss_mib" > "$OUT/rss-20x50.csv"
t0=$SECONDS
while kill -0 "$LG" 2>/dev/null; do
    echo "$((SECONDS - t0)),$(awk "BEGIN {printf \"%.1f\", $(rss_kib "$pid")/1024}")" >> "$OUT/rss-20x50.csv"
    sleep 2
done
hwm=$(hwm_kib "$pid")
stop "$pid"
python3 - "$OUT/rss-20x50.csv" "$hwm" "$OUT/memory.json" <<'EOF' | tee -a "$OUT/results.md"
import csv, json, sys
rows = list(csv.DictReader(open(sys.argv[1])))
s = json.load(open(sys.argv[3]))
v = [float(r["rss_mib"]) for r in rows]
step = max(1, len(v) // 40)
print(f"- 20 journeys x 50 cohorts at {int(s['target_rate'])} spans/s for {s['elapsed_s']:.0f}s ({s['spans_accepted']} spans accepted, "
      f"{s['spans_refused'] + s['spans_failed']} not): peak RSS {int(sys.argv[2]) / 1024:.1f} MiB; "
      f"RSS every {2 * step} s (MiB), min {min(v):.0f} / max {max(v):.0f}: " + " ".join(f"{x:.0f}" for x in v[::step]))
EOF
fi
log "results in $OUT/results.md"
