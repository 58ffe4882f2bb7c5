#!/usr/bin/env bash
# Stage 1 of cerflow on Kafka (issue 13), measured: spans per CPU-second of cerflow when it
# consumes OTLP protobuf from a Kafka topic, and the wall-clock rate one instance drains
# a backlog at.
#
# 1. A single-node Apache Kafka broker (KRaft; jars from scripts/kafka.sh) on free ports,
#    topic otlp_spans with PARTITIONS partitions.
# 2. `cerflow loadgen` sends SPANS spans (SPR per request) to the real OpenTelemetry
#    Collector (target/otelcol/otelcol or $OTELCOL_BIN), whose `kafka` exporter writes one
#    otlp_proto message per request, keyed by trace id (partition_traces_by_id).
# 3. The release cerflow starts with receivers.kafka from the earliest offset and the
#    journeys loadgen --print-config gives; from /healthz until cerflow_processed_spans_total
#    reaches SPANS its CPU ticks (utime+stime, /proc) and wall time are measured.
# RUNS times (each run a fresh consumer group over the same topic); medians printed.
#
# Usage: scripts/bench-kafka.sh   (about 3 minutes with the defaults)
# Knobs: SPANS=2000000 SPR=500 PARTITIONS=8 RUNS=3 SKIP_BUILD=1 CERFLOW=<another binary>
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
source "$ROOT/scripts/bench-lib.sh"
SPANS=${SPANS:-2000000}
SPR=${SPR:-500}
PARTITIONS=${PARTITIONS:-8}
RUNS=${RUNS:-3}
OTELCOL=${OTELCOL_BIN:-$ROOT/target/otelcol/otelcol}
[ -x "$OTELCOL" ] || { echo "no Collector at $OTELCOL: run scripts/test.sh once or set OTELCOL_BIN" >&2; exit 1; }
if [ -z "${SKIP_BUILD:-}" ]; then
    (cd "$ROOT" && cargo build --release --quiet)
fi
CERFLOW=${CERFLOW:-$ROOT/target/release/cerflow}
LIBS=$(bash "$ROOT/scripts/kafka.sh")
WORK=$(mktemp -d)
trap 'stop_all; rm -rf "$WORK"' EXIT INT TERM

KPORT=$(free_port); CPORT=$(free_port)
cat >"$WORK/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$CPORT
listeners=PLAINTEXT://127.0.0.1:$KPORT,CONTROLLER://127.0.0.1:$CPORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KPORT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$WORK/data
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
PROPS
java -cp "$LIBS/*" kafka.tools.StorageTool format --standalone -t WlpaWlpaWlpaWlpaWlpaWg \
    -c "$WORK/server.properties" >/dev/null 2>&1
java -Xmx1g -cp "$LIBS/*" kafka.Kafka "$WORK/server.properties" >"$WORK/kafka.log" 2>&1 &
PIDS+=($!)
wait_port "$KPORT" 120 || { echo "the broker did not start" >&2; tail -20 "$WORK/kafka.log" >&2; exit 1; }
java -cp "$LIBS/*" org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$KPORT" \
    --create --topic otlp_spans --partitions "$PARTITIONS" --replication-factor 1 >/dev/null

GRPC=$(free_port)
cat >"$WORK/otelcol.yaml" <<YAML
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:$GRPC
        max_recv_msg_size_mib: 64
exporters:
  kafka:
    brokers: ["127.0.0.1:$KPORT"]
    traces:
      topic: otlp_spans
      encoding: otlp_proto
    partition_traces_by_id: true
    producer:
      max_message_bytes: 8000000
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [kafka]
YAML
"$OTELCOL" --config "file:$WORK/otelcol.yaml" >"$WORK/otelcol.log" 2>&1 &
OTELCOL_PID=$!
PIDS+=("$OTELCOL_PID")
wait_port "$GRPC" 60
"$CERFLOW" loadgen --endpoint "127.0.0.1:$GRPC" --rate 0 --spans "$SPANS" \
    --spans-per-request "$SPR" --log-level warn >"$WORK/loadgen.txt"
stop "$OTELCOL_PID"  # flushes its producer

run() { # n -> "cpu_seconds wall_seconds"
    local g=$1 prom grpc http
    prom=$(free_port); grpc=$(free_port); http=$(free_port)
    {
        "$CERFLOW" loadgen --print-config | sed '/^version:/d'
        cat <<YAML
receivers:
  otlp:
    protocols:
      grpc: { endpoint: 127.0.0.1:$grpc }
      http: { endpoint: 127.0.0.1:$http }
  kafka:
    brokers: ["127.0.0.1:$KPORT"]
    group_id: bench-$g
    initial_offset: earliest
exporters:
  prometheus: { endpoint: 127.0.0.1:$prom }
YAML
    } >"$WORK/cerflow-$g.yaml"
    (cd "$WORK" && exec "$CERFLOW" --config "$WORK/cerflow-$g.yaml" --log-level warn) >"$WORK/cerflow-$g.log" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    wait_port "$prom" 30
    local t0 c0 done=0
    t0=$(date +%s.%N); c0=$(cpu_ticks "$pid")
    for _ in $(seq 1 6000); do
        done=$(curl -s "http://127.0.0.1:$prom/metrics" | awk '$1 == "cerflow_processed_spans_total" {print $2}')
        [ "${done:-0}" = "$SPANS" ] && break
        sleep 0.1
    done
    local t1 c1
    t1=$(date +%s.%N); c1=$(cpu_ticks "$pid")
    stop "$pid"
    [ "${done:-0}" = "$SPANS" ] || { echo "run $g: $done of $SPANS spans processed" >&2; exit 1; }
    python3 -c "import os; print(($c1-$c0)/os.sysconf('SC_CLK_TCK'), $t1-$t0)"
}

echo "spans=$SPANS spans_per_message=$SPR partitions=$PARTITIONS runs=$RUNS nproc=$(nproc) load=$(cut -d' ' -f1-3 /proc/loadavg)"
results=()
for g in $(seq 1 "$RUNS"); do
    r=$(run "$g")
    echo "run $g: cpu_s wall_s = $r"
    results+=("$r")
done
printf '%s\n' "${results[@]}" | python3 -c "
import statistics, sys
rows = [tuple(map(float, l.split())) for l in sys.stdin if l.strip()]
cpu = statistics.median(r[0] for r in rows); wall = statistics.median(r[1] for r in rows)
print(f'median: {$SPANS / cpu:,.0f} spans per CPU-second, {$SPANS / wall:,.0f} spans/s wall ({cpu:.2f} CPU-s, {wall:.2f} s)')
"
