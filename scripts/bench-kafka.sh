#!/usr/bin/env bash
# Stage 1 of issue 13 on a real broker: spans per CPU-second of cerflow consuming OTLP
# from Kafka, and its peak memory.
#
#   1. A single-node Apache Kafka (KRaft, the jars of scripts/kafka.sh) on free loopback
#      ports, its data under $OUT/broker (removed at exit); a topic of PARTITIONS.
#   2. The backlog: `cerflow loadgen` (SPANS spans, traces of DEPS+1 spans) -> the real
#      OpenTelemetry Collector (tests/otelcol: otlp receiver, batch, kafka exporter with
#      otlp_proto and partition_traces_by_id, as README "Scaling out" configures it)
#      -> the topic. Untimed: the script waits until the Collector has drained (the
#      topic's end offsets unchanged for 5 s).
#   3. RUNS times: a fresh cerflow in a new consumer group (initial_offset: earliest)
#      reads the whole backlog; from its /healthz answering to
#      cerflow_processed_spans_total reaching the backlog, its CPU time (utime+stime from
#      /proc) and wall time; its peak RSS (VmHWM). Spans counted by cerflow itself, so a
#      span the Collector dropped is not counted as consumed.
#
# Everything listens on 127.0.0.1 on free ports; every process started here is stopped
# on exit (trap). Results: $OUT/results.md (appended to BENCHMARKS.md by hand).
#
# Usage: scripts/bench-kafka.sh   (about 5 minutes with the defaults on 2 idle cores)
# Knobs: SPANS=1000000 PARTITIONS=4 DEPS=4 SPR=1000 RATE=50000 RUNS=3 WORKERS=2
#        COMPRESSION=none (the Collector producer's: none, gzip, snappy, lz4, zstd)
#        CERFLOW_EXTRA='traces: { enabled: false }' (YAML appended to cerflow's config)
#        OTLP_RUNS=0: that many runs of the same spans sent by loadgen straight to a cerflow
#        over OTLP/gRPC (no Kafka), CPU time per span alike, for comparison
#        OUT=target/bench-kafka SKIP_BUILD=1 (measure target/release/cerflow as it is)
#        CERFLOW=path (another release binary; implies SKIP_BUILD) OTELCOL_BIN=path
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SPANS=${SPANS:-1000000}
PARTITIONS=${PARTITIONS:-4}
DEPS=${DEPS:-4}
RATE=${RATE:-50000}
WORKERS=${WORKERS:-2}
COMPRESSION=${COMPRESSION:-none}
CERFLOW_EXTRA=${CERFLOW_EXTRA:-}
OUT=${OUT:-$ROOT/target/bench-kafka}
TOPIC=otlp_spans
log() { echo "bench-kafka: $*" >&2; }
if [ -n "${CERFLOW:-}" ]; then
    SKIP_BUILD=1
else
    CERFLOW=$ROOT/target/release/cerflow
fi
# RUNS SPR SKIP_BUILD, build_cerflow, ports, /proc, stopping (INT/TERM exit 130/143).
. "$ROOT/scripts/bench-lib.sh"
build_cerflow
if [ -z "${OTELCOL_BIN:-}" ]; then
    OTELCOL_BIN=$(ls -t "${CERFLOW_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cerflow}"/otelcol-*/otelcol 2>/dev/null | head -n1 || true)
fi
[ -x "${OTELCOL_BIN:-}" ] || { log "no Collector: run scripts/test.sh once (it builds tests/otelcol) or set OTELCOL_BIN"; exit 1; }
LIBS=${CERFLOW_KAFKA_LIBS:-$(bash "$ROOT/scripts/kafka.sh")}
CP="$LIBS/*"

rm -rf "$OUT"
mkdir -p "$OUT/broker"
BROKER_DIR=$OUT/broker
KAFKA_PID=""
cleanup() {
    [ -n "$KAFKA_PID" ] && stop "$KAFKA_PID"
    stop_all
    rm -rf "$BROKER_DIR"
}
trap cleanup EXIT

# ------------------------------------------------------------------ 1. broker
KPORT=$(free_port); CPORT=$(free_port)
while [ "$CPORT" = "$KPORT" ]; do CPORT=$(free_port); done
BOOTSTRAP=127.0.0.1:$KPORT
cat > "$BROKER_DIR/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$CPORT
listeners=PLAINTEXT://127.0.0.1:$KPORT,CONTROLLER://127.0.0.1:$CPORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KPORT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$BROKER_DIR/data
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
PROPS
printf 'log4j.rootLogger=WARN, stdout\nlog4j.appender.stdout=org.apache.log4j.ConsoleAppender\nlog4j.appender.stdout.layout=org.apache.log4j.PatternLayout\nlog4j.appender.stdout.layout.ConversionPattern=[%%d] %%p %%m (%%c)%%n\n' \
    > "$BROKER_DIR/log4j.properties"
CLUSTER=$(python3 -c 'import base64; print(base64.urlsafe_b64encode(bytes([0x5a]*16)).decode().rstrip("="))')
java -cp "$CP" kafka.tools.StorageTool format --standalone -t "$CLUSTER" \
    -c "$BROKER_DIR/server.properties" > "$OUT/broker-format.log" 2>&1
log "starting Kafka on $BOOTSTRAP"
java -Xmx1g -Dlog4j.configuration="file:$BROKER_DIR/log4j.properties" -cp "$CP" kafka.Kafka \
    "$BROKER_DIR/server.properties" > "$OUT/broker.log" 2>&1 &
PIDS+=("$!")
KAFKA_PID=$!
wait_port "$KPORT" 120 || { log "the broker did not open $BOOTSTRAP; see $OUT/broker.log"; exit 1; }
kafka_tool() { java -cp "$CP" "$@" 2> >(grep -v '^SLF4J\|log4j' >&2); }
for _ in $(seq 1 30); do
    kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$BOOTSTRAP" --create \
        --topic "$TOPIC" --partitions "$PARTITIONS" --replication-factor 1 > "$OUT/topic.log" 2>&1 && break
    sleep 2
done
end_offsets() { # sum of the topic's end offsets: messages produced
    kafka_tool org.apache.kafka.tools.GetOffsetShell --bootstrap-server "$BOOTSTRAP" --topic "$TOPIC" \
        2>/dev/null | awk -F: '{s += $3} END {print s + 0}'
}
topic_bytes() { # bytes of the topic's log segments (not the preallocated indexes)
    find "$BROKER_DIR/data" -path "*/$TOPIC-*" -name '*.log' -printf '%s\n' | awk '{s += $1} END {print s + 0}'
}

# ------------------------------------------------------------------ 2. backlog
OTLP=$(free_port)
cat > "$OUT/otelcol.yaml" <<CFG
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:$OTLP
processors:
  batch:
    timeout: 200ms
exporters:
  kafka:
    brokers: ["$BOOTSTRAP"]
    traces:
      topic: $TOPIC
      encoding: otlp_proto
    partition_traces_by_id: true
    producer:
      compression: $COMPRESSION
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [kafka]
CFG
"$OTELCOL_BIN" --config "$OUT/otelcol.yaml" > "$OUT/otelcol.log" 2>&1 &
PIDS+=("$!")
OTELCOL_PID=$!
wait_port "$OTLP" 60 || { log "the Collector did not open its port; see $OUT/otelcol.log"; exit 1; }
log "producing $SPANS spans (traces of $((DEPS + 1))) through the Collector at $RATE spans/s"
t0=$SECONDS
"$CERFLOW" loadgen --endpoint "127.0.0.1:$OTLP" --spans "$SPANS" --rate "$RATE" \
    --spans-per-request "$SPR" --dependencies "$DEPS" --quiet --max-errors 1000000 \
    --summary-json "$OUT/loadgen.json" > "$OUT/loadgen.log" 2>&1 || true
prev=-1; same=0
while [ "$same" -lt 5 ]; do
    sleep 1
    now=$(end_offsets)
    if [ "$now" = "$prev" ]; then same=$((same + 1)); else same=0; prev=$now; fi
done
MESSAGES=$prev
ACCEPTED=$(python3 -c "import json; print(json.load(open('$OUT/loadgen.json'))['spans_accepted'])")
TOPIC_BYTES=$(topic_bytes)
log "backlog: $ACCEPTED spans accepted by the Collector, $MESSAGES messages, $TOPIC_BYTES bytes on disk, in $((SECONDS - t0)) s"
stop "$OTELCOL_PID"

# ------------------------------------------------------------------ 3. consumption
start_cerflow() { # grpc|prom NAME [GROUP]: writes $OUT/NAME.yaml (OTLP in; with a consumer
    # group, also the topic from its start), starts cerflow on it and waits until the
    # port named first answers; sets PID, GRPC, PROM. Both the Kafka and the OTLP runs.
    local wait_on=$1 name=$2 group=${3:-}
    PROM=$(free_port); GRPC=$(free_port); HTTP=$(free_port)
    {
        printf 'receivers:\n  otlp:\n    protocols:\n'
        printf '      grpc: { endpoint: "127.0.0.1:%s" }\n      http: { endpoint: "127.0.0.1:%s" }\n' "$GRPC" "$HTTP"
        if [ -n "$group" ]; then
            printf '  kafka:\n    brokers: ["%s"]\n    topic: %s\n    group_id: %s\n    initial_offset: earliest\n' \
                "$BOOTSTRAP" "$TOPIC" "$group"
        fi
        printf 'exporters:\n  prometheus: { endpoint: "127.0.0.1:%s" }\n' "$PROM"
        printf 'pipeline:\n  workers: %s\nslo:\n  checkpoint: { enabled: false }\n' "$WORKERS"
        grep -v '^#' "$OUT/journeys.yaml"
        if [ -n "$CERFLOW_EXTRA" ]; then printf '%s\n' "$CERFLOW_EXTRA"; fi
    } > "$OUT/$name.yaml"
    "$CERFLOW" --config "$OUT/$name.yaml" --log-level warn > "$OUT/$name.log" 2>&1 &
    PID=$!
    PIDS+=("$PID")
    local port=$PROM
    if [ "$wait_on" = grpc ]; then port=$GRPC; fi
    wait_port "$port" 30 || { log "cerflow did not open its port; see $OUT/$name.log"; exit 1; }
}
"$CERFLOW" loadgen --print-config --dependencies "$DEPS" > "$OUT/journeys.yaml"
metric() { # port name -> value of the unlabelled or first matching sample
    python3 - "$1" "$2" <<'PY'
import sys, urllib.request
try:
    t = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=5).read().decode()
except Exception:
    print(-1); sys.exit()
want = sys.argv[2]
for l in t.splitlines():
    if l.startswith(want + " ") or l.startswith(want + "{"):
        print(float(l.split()[-1])); break
else:
    print(0)
PY
}
HZ=$(getconf CLK_TCK)
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
: > "$OUT/results.tsv"
for r in $(seq 1 "$RUNS"); do
    start_cerflow prom "cerflow-$r" "bench-$r"
    before=$(cpu_ticks "$PID"); w0=$(date +%s.%N); wfirst=""
    last=-1; stalled=0; t_last=$SECONDS
    while :; do
        got=$(metric "$PROM" cerflow_processed_spans_total)
        # Joining the group and being assigned partitions takes a few seconds of wall
        # time (little CPU): the consumption rate is timed from the first span.
        if [ -z "$wfirst" ] && python3 -c "import sys; sys.exit(0 if float('$got') > 0 else 1)"; then
            wfirst=$(date +%s.%N)
        fi
        if python3 -c "import sys; sys.exit(0 if float('$got') >= $ACCEPTED else 1)"; then break; fi
        # A backlog the Collector delivered short of what it accepted ends at what came;
        # nothing for 60 s (e.g. a compression cerflow's librdkafka lacks: zstd) ends it.
        if [ "$got" = "$last" ]; then stalled=$((stalled + 1)); else stalled=0; last=$got; t_last=$SECONDS; fi
        if [ "$stalled" -ge 50 ] && [ "$got" != "0" ] && [ "$got" != "0.0" ]; then break; fi
        if [ $((SECONDS - t_last)) -ge 60 ]; then
            log "run $r: no progress for 60 s at $got spans; see $OUT/cerflow-$r.log"
            break
        fi
        sleep 0.2
    done
    after=$(cpu_ticks "$PID"); w1=$(date +%s.%N)
    hwm=$(hwm_kib "$PID")
    refused=$(metric "$PROM" cerflow_refused_spans_total)
    stop "$PID"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$got" "$((after - before))" \
        "$(python3 -c "print(f'{$w1 - $w0:.2f}')")" "$hwm" "$refused" \
        "$(python3 -c "print(f'{$w1 - ${wfirst:-$w0}:.2f}')")" >> "$OUT/results.tsv"
    log "run $r: $(tail -1 "$OUT/results.tsv")"
done

# ------------------------------------------------------------------ 4. OTLP, for comparison
: > "$OUT/otlp.tsv"
for r in $(seq 1 "${OTLP_RUNS:-0}"); do
    start_cerflow grpc "cerflow-otlp-$r"
    before=$(cpu_ticks "$PID")
    "$CERFLOW" loadgen --endpoint "127.0.0.1:$GRPC" --spans "$SPANS" --rate "$RATE" \
        --spans-per-request "$SPR" --dependencies "$DEPS" --quiet --max-errors 1000000 \
        --summary-json "$OUT/otlp-$r.json" > "$OUT/otlp-$r.log" 2>&1 || true
    sent=$(python3 -c "import json; print(json.load(open('$OUT/otlp-$r.json'))['spans_accepted'])")
    for _ in $(seq 1 300); do
        got=$(metric "$PROM" cerflow_processed_spans_total)
        python3 -c "import sys; sys.exit(0 if float('$got') >= $sent else 1)" && break
        sleep 0.2
    done
    after=$(cpu_ticks "$PID")
    hwm=$(hwm_kib "$PID")
    stop "$PID"
    printf '%s\t%s\t%s\t%s\n' "$r" "$got" "$((after - before))" "$hwm" >> "$OUT/otlp.tsv"
    log "OTLP run $r: $(tail -1 "$OUT/otlp.tsv")"
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

python3 - "$OUT/results.tsv" "$HZ" "$ACCEPTED" "$MESSAGES" "$TOPIC_BYTES" "$PARTITIONS" "$DEPS" "$WORKERS" "$LOAD_BEFORE" "$LOAD_AFTER" "$COMPRESSION" "$CERFLOW_EXTRA" > "$OUT/results.md" <<'PY'
import statistics as st, sys, subprocess
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
hz, accepted, messages, tbytes, parts, deps, workers, lb, la, comp, extra = sys.argv[2:]
hz, accepted, messages, tbytes = int(hz), int(accepted), int(messages), int(tbytes)
cpu = [int(r[2]) / hz for r in rows]
spans = [float(r[1]) for r in rows]
per = [s / c if c else 0 for s, c in zip(spans, cpu)]
wall = [float(r[3]) for r in rows]
flow = [float(r[6]) for r in rows]
mem = [int(r[4]) / 1024 for r in rows]
model = open("/proc/cpuinfo").read().split("model name")[1].split("\n")[0].split(":", 1)[1].strip()
print(f"- machine: {subprocess.getoutput('nproc')} cores, {model}; load averages (1/5/15 min) before {lb}, after {la}")
print(f"- backlog: {accepted:,} spans accepted by the Collector in traces of {int(deps) + 1} spans, "
      f"{messages:,} Kafka messages (one per trace: {accepted / max(messages, 1):.1f} spans, "
      f"{tbytes / max(messages, 1):,.0f} bytes each in the log segments, {tbytes / max(accepted, 1):.0f} per span), "
      f"{parts} partitions, producer compression {comp}; cerflow with {workers} workers"
      + (f" and `{extra}`" if extra else ""))
otlp = [l.rstrip("\n").split("\t") for l in open(sys.argv[1].replace("results.tsv", "otlp.tsv")) if l.strip()]
print()
print("| run | spans consumed | CPU s | wall s (from start) | wall s (from first span) | spans/s (wall, from first span) | spans per CPU-second | CPU us per span | peak RSS MiB | refused |")
print("|---|---|---|---|---|---|---|---|---|---|")
for r, c, p, w, f, m in zip(rows, cpu, per, wall, flow, mem):
    print(f"| {r[0]} | {float(r[1]):,.0f} | {c:.2f} | {w:.2f} | {f:.2f} | {float(r[1]) / f if f else 0:,.0f} | {p:,.0f} | {1e6 / p if p else 0:.2f} | {m:.1f} | {float(r[5]):.0f} |")
rate = [s / f if f else 0 for s, f in zip(spans, flow)]
print(f"| median | {st.median(spans):,.0f} | {st.median(cpu):.2f} | {st.median(wall):.2f} | {st.median(flow):.2f} | {st.median(rate):,.0f} | {st.median(per):,.0f} | "
      f"{1e6 / st.median(per) if st.median(per) else 0:.2f} | {st.median(mem):.1f} | |")
if otlp:
    ocpu = [int(r[2]) / hz for r in otlp]
    oper = [float(r[1]) / c if c else 0 for r, c in zip(otlp, ocpu)]
    print()
    print("| the same spans over OTLP/gRPC, no Kafka (loadgen at RATE, requests of SPR spans) | spans | CPU s | spans per CPU-second | CPU us per span | peak RSS MiB |")
    print("|---|---|---|---|---|---|")
    for r, c, p in zip(otlp, ocpu, oper):
        print(f"| run {r[0]} | {float(r[1]):,.0f} | {c:.2f} | {p:,.0f} | {1e6 / p if p else 0:.2f} | {int(r[3]) / 1024:.1f} |")
PY
cat "$OUT/results.md"
log "results in $OUT/results.md"
