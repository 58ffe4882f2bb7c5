#!/usr/bin/env bash
# Instructions per span on cerflow's receive path (receive, decode, match, batch) under
# `valgrind --tool=callgrind`: unlike CPU time they repeat on a shared, loaded machine,
# so a hot-path change can be measured before/after. Kernel time (page faults, socket
# copies) is not counted: measure that with benches/compare.sh and `perf record`.
#
#   benches/hotpath_callgrind.sh grpc            # or: http-json, http (protobuf)
#   benches/hotpath_callgrind.sh http-json --gzip
#   knobs: SPANS=50000 CERFLOW=target/release/cerflow OUT=target/hotpath
#          WORKERS=1: count the workers' record step (`Worker::record`: window state,
#          trace assembly) as well
#          TRACE_BYTES=1048576: `traces.max_bytes` (the smallest allowed), so that the
#          trace buffer fills within the run and each span also pays its trace's
#          eviction, as at an unlimited rate (under valgrind the default 48 MiB never
#          fills)
#
# cerflow runs the `loadgen --print-config` config (3 journeys, cohorts cloud.region and
# app.plan.tier); the loadgen (not under valgrind) sends SPANS spans, 1000 per request,
# one request in flight. Counted: everything below the receiver's request handler
# (`--toggle-collect`), so start-up, ticks and the workers' record step stay out.
set -euo pipefail
cd "$(dirname "$0")/.."
PROTO=${1:-grpc}
shift || true
CERFLOW=${CERFLOW:-target/release/cerflow}
SPANS=${SPANS:-50000}
OUT=${OUT:-target/hotpath}
mkdir -p "$OUT"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
grpc=$(free_port); http=$(free_port); prom=$(free_port)
cfg="$OUT/cerflow.yaml"
"$CERFLOW" loadgen --print-config > "$cfg"
cat >> "$cfg" <<YAML
receivers:
  otlp:
    protocols:
      grpc: { endpoint: "127.0.0.1:$grpc" }
      http: { endpoint: "127.0.0.1:$http" }
exporters:
  prometheus: { endpoint: "127.0.0.1:$prom" }
YAML
if [ -n "${TRACE_BYTES:-}" ]; then
    echo "traces: { max_bytes: $TRACE_BYTES }" >> "$cfg"
fi
case "$PROTO" in
    grpc) endpoint="127.0.0.1:$grpc"; toggle='*grpc::Traces*Signal*handle*' ;;
    *) endpoint="http://127.0.0.1:$http"; toggle='cerflow::receiver::http::handle*' ;;
esac
tag="$PROTO${1:+-gzip}"
workers=()
if [ "${WORKERS:-0}" = 1 ]; then
    workers=(--toggle-collect='cerflow::pipeline::Worker::record')
    tag="$tag-workers"
fi
if [ -n "${TRACE_BYTES:-}" ]; then tag="$tag-traces$TRACE_BYTES"; fi
valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.$tag.out" \
    --toggle-collect="$toggle" "${workers[@]}" "$CERFLOW" --config "$cfg" --log-level warn \
    > "$OUT/cerflow.$tag.log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true' EXIT
for _ in $(seq 1 120); do
    if python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$grpc),1)" 2>/dev/null; then break; fi
    sleep 0.5
done
"$CERFLOW" loadgen --endpoint "$endpoint" --protocol "$PROTO" --rate 0 --spans "$SPANS" \
    --spans-per-request 1000 --concurrency 1 --quiet --summary-json "$OUT/loadgen.$tag.json" "$@" \
    > "$OUT/loadgen.$tag.log" 2>&1
kill -INT "$pid"
wait "$pid" || true
trap - EXIT
total=$(awk '/^(summary|totals):/ {print $2; exit}' "$OUT/callgrind.$tag.out")
accepted=$(python3 -c "import json; print(json.load(open('$OUT/loadgen.$tag.json'))['spans_accepted'])")
echo "$tag: $accepted spans accepted, $total instructions counted, $((total / accepted)) per span"
echo "profile: callgrind_annotate $OUT/callgrind.$tag.out | head -60"
