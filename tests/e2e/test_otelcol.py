"""cerflow beside the real OpenTelemetry Collector (built from tests/otelcol):

- the Python SDK -> Collector (OTLP receiver, batch, OTLP/gRPC exporter with gzip) -> cerflow,
  and the same over the Collector's OTLP/HTTP exporter in protobuf and JSON: cerflow must
  produce exactly the figures scenario.py works out by hand, as if the SDK sent directly;
- cerflow's OTLP push -> Collector (OTLP receiver -> prometheus exporter): every pushed
  series arrives with cerflow's value and labels, under the name the exporter's
  translation gives it;
- backpressure: cerflow with a one-batch queue refuses with UNAVAILABLE + RetryInfo, the
  Collector's sending queue retries, and every span is processed exactly once.
"""

from __future__ import annotations

import subprocess
import time

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExportResult
from opentelemetry.trace import SpanKind

import scenario
from collector import otelcol_bin, start_otelcol  # noqa: F401 (fixtures)
from conftest import fmt_key, key
from test_python_sdk import Recording, check_scenario, send_scenario

# --------------------------------------------------------------------------- Collector -> cerflow

RECEIVER = """\
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
"""

FORWARD_GRPC = RECEIVER + """\
processors:
  batch:
    timeout: 100ms
exporters:
  otlp_grpc:
    endpoint: 127.0.0.1:{cerflow_grpc}
    compression: gzip
    tls:
      insecure: true
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [otlp_grpc]
"""

FORWARD_HTTP = RECEIVER + """\
processors:
  batch:
    timeout: 100ms
exporters:
  otlp_http:
    traces_endpoint: http://127.0.0.1:{cerflow_http}/v1/traces
    encoding: {encoding}
    compression: {compression}
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [otlp_http]
"""


def test_sdk_to_collector_to_cerflow_over_grpc_gzip(start_cerflow, start_otelcol):
    cf = start_cerflow(scenario.CONFIG)
    col = start_otelcol(FORWARD_GRPC, cerflow_grpc=cf.grpc_port)
    send_scenario(GrpcExporter(endpoint=col.grpc_endpoint, insecure=True, timeout=10), batch=True)
    # The Collector regroups spans but changes none: the figures are those of the SDK
    # sending directly, all of them received over gRPC.
    check_scenario(cf, "grpc")


@pytest.mark.parametrize(
    "encoding,compression",
    [("proto", "gzip"), ("json", "none")],
    ids=["protobuf-gzip", "json-plain"],
)
def test_collector_to_cerflow_over_otlphttp(start_cerflow, start_otelcol, encoding, compression):
    cf = start_cerflow(scenario.CONFIG)
    col = start_otelcol(FORWARD_HTTP, cerflow_http=cf.http_port, encoding=encoding, compression=compression)
    send_scenario(GrpcExporter(endpoint=col.grpc_endpoint, insecure=True, timeout=10), batch=True)
    check_scenario(cf, "http")


# --------------------------------------------------------------------------- cerflow push -> Collector

TO_PROMETHEUS = RECEIVER + """\
exporters:
  prometheus:
    endpoint: 127.0.0.1:{prom}
    metric_expiration: 10m
service:
  pipelines:
    metrics:
      receivers: [otlp]
      exporters: [prometheus]
"""

# cerflow's /metrics name -> the Collector's, for every family the OTLP push carries (the
# README's OTLP push table). The prometheus exporter builds names from the OTLP name and
# unit: `_total` for a monotonic sum, a unit suffix (`s` -> `_seconds`, `1` -> `_ratio`,
# `{request}/s` -> `_per_second`, annotations in braces dropped). cerflow's own names
# follow the same rule except for two: the request rate, whose OTLP name is
# `cer.journey.request_rate`, and the info gauge, whose unit `1` earns it `_ratio`.
PUSHED = {
    "cer_journey_requests_total": "cer_journey_requests_total",
    "cer_journey_errors_total": "cer_journey_errors_total",
    "cer_journey_slow_total": "cer_journey_slow_total",
    "cer_journey_incorrect_total": "cer_journey_incorrect_total",
    "cer_journey_duration_seconds_bucket": "cer_journey_duration_seconds_bucket",
    "cer_journey_duration_seconds_sum": "cer_journey_duration_seconds_sum",
    "cer_journey_duration_seconds_count": "cer_journey_duration_seconds_count",
    "cer_sli_availability_ratio": "cer_sli_availability_ratio",
    "cer_sli_latency_ratio": "cer_sli_latency_ratio",
    "cer_sli_correctness_ratio": "cer_sli_correctness_ratio",
    "cer_journey_latency_seconds": "cer_journey_latency_seconds",
    "cer_journey_requests_per_second": "cer_journey_request_rate_per_second",
    "cer_telemetry_coverage_ratio": "cer_telemetry_coverage_ratio",
    "cer_definition_info": "cer_definition_info_ratio",
    # Distinct users (unit `{user}`: no suffix). The scenario's spans carry no user id, so
    # both pages show 0 users and no affected-users ratio (absent without users); the value
    # families need a journey with `value`, which the scenario has not.
    "cer_journey_users": "cer_journey_users",
    "cer_journey_users_affected": "cer_journey_users_affected",
}


def collector_view(m, extra: dict) -> dict:
    """cerflow's pushed series as the Collector must show them: renamed per PUSHED, with
    the labels the Collector adds (`extra`)."""
    out = {}
    for (name, labels), value in m.samples.items():
        if name in PUSHED:
            out[(PUSHED[name], labels | frozenset(extra.items()))] = value
    return out


def test_cerflow_push_to_collector_prometheus_exporter(start_otelcol, start_cerflow):
    col = start_otelcol(TO_PROMETHEUS)
    cf = start_cerflow(
        scenario.CONFIG,
        exporters=f"  otlp:\n    endpoint: http://127.0.0.1:{col.ports['grpc']}\n    interval: 200ms\n",
    )
    send_scenario(GrpcExporter(endpoint=cf.grpc_endpoint, insecure=True, timeout=10), batch=True)
    mine = cf.wait_for(scenario.expected("grpc"))
    # Every family in PUSHED is on cerflow's page, so the comparison below covers them all.
    assert {n for n, _ in mine.samples} >= set(PUSHED), set(PUSHED) - {n for n, _ in mine.samples}

    # The exporter turns the resource into `job` (service.name) and `instance`
    # (service.instance.id, random per cerflow process), and the scope into otel_scope_*.
    deadline = time.monotonic() + 15
    want: dict = {}
    while True:
        theirs = col.scrape()
        got = {k: v for k, v in theirs.samples.items() if k[0].startswith("cer_")}
        instances = {dict(lbl).get("instance") for _, lbl in got}
        if len(instances) == 1 and None not in instances:
            extra = {
                "job": "cerflow",
                "instance": next(iter(instances)),
                "otel_scope_name": "cerflow",
                "otel_scope_version": mine_version(cf),
                "otel_scope_schema_url": "",
            }
            want = collector_view(mine, extra)
            if got == want:
                break
        if time.monotonic() > deadline:
            missing = sorted(fmt_key(k) for k in set(want) - set(got))[:20]
            unexpected = sorted(fmt_key(k) for k in set(got) - set(want))[:20]
            wrong = [f"{fmt_key(k)}: cerflow {want[k]!r}, Collector {got[k]!r}" for k in set(got) & set(want) if got[k] != want[k]][:20]
            pytest.fail(
                f"the Collector's page never matched cerflow's after 15s\nmissing: {missing}\n"
                f"unexpected: {unexpected}\nwrong: {wrong}\n--- Collector ---\n{theirs.text}",
                pytrace=False,
            )
        time.sleep(0.2)
    # The spot checks scenario.py worked out by hand, read from the Collector's page.
    gold = dict(journey="checkout", cloud_region="eu-west-1", app_plan_tier="gold", **extra)
    assert got[key("cer_journey_requests_total", **gold)] == 5
    assert got[key("cer_sli_availability_ratio", window="1m", **gold)] == 0.8
    assert got[key("cer_journey_latency_seconds", window="5m", quantile="0.5", **gold)] == 0.2
    assert got[key("cer_journey_request_rate_per_second", window="1m", **gold)] == 5 / 60
    assert got[key("cer_journey_duration_seconds_bucket", le="0.5", **gold)] == 4
    assert len(got) == len(want)
    print(f"{len(want)} series pushed by cerflow matched on the Collector's page; labels added: {sorted(extra)}")


def mine_version(cf) -> str:
    """cerflow's version, as its own page states it (the push's scope version)."""
    (labels,) = cf.metrics().label_sets("cerflow_build_info")
    return dict(labels)["version"]


# --------------------------------------------------------------------------- backpressure

BACKPRESSURE = RECEIVER + """\
processors:
  batch:
    timeout: 50ms
    send_batch_size: 500
    send_batch_max_size: 500
exporters:
  otlp_grpc:
    endpoint: 127.0.0.1:{cerflow_grpc}
    compression: none
    tls:
      insecure: true
    sending_queue:
      enabled: true
      num_consumers: 16
      queue_size: 10000
    retry_on_failure:
      enabled: true
      initial_interval: 100ms
      max_interval: 2s
      max_elapsed_time: 120s
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [otlp_grpc]
"""

CHECKOUT = """\
journeys:
  - name: checkout
    match: {span_name: POST /checkout, kind: server}
    latency_threshold: 300ms
"""


def send_spans(endpoint: str, n: int) -> int:
    """n server spans `POST /checkout` from the SDK, 1000 per export; returns how many
    the Collector acknowledged (every export must succeed)."""
    rec = Recording(GrpcExporter(endpoint=endpoint, insecure=True, timeout=30))
    provider = TracerProvider(resource=Resource.create({"service.name": "shop"}))
    # The queue holds every span: the SDK must not drop any before export.
    provider.add_span_processor(
        BatchSpanProcessor(rec, max_queue_size=n, max_export_batch_size=1000, schedule_delay_millis=50)
    )
    tracer = provider.get_tracer("cerflow-e2e-backpressure")
    for _ in range(n):
        tracer.start_span("POST /checkout", kind=SpanKind.SERVER).end()
    assert provider.force_flush(60_000), "force_flush timed out"
    provider.shutdown()
    assert rec.results and all(r == SpanExportResult.SUCCESS for r in rec.results), rec.results
    return rec.spans


def test_backpressure_collector_retries_until_every_span_is_processed_once(start_cerflow, start_otelcol):
    cf = start_cerflow(CHECKOUT, pipeline="  workers: 1\n  queue_size: 1\n")
    col = start_otelcol(BACKPRESSURE, cerflow_grpc=cf.grpc_port)
    refused_key = key("cerflow_refused_requests_total", reason="queue_full")
    sent = 0
    # Sixteen concurrent exports against a one-batch queue are refused within a round or
    # two; the rounds stop at the first refusal so the test stays short.
    for _ in range(10):
        sent += send_spans(col.grpc_endpoint, 10_000)
        m = cf.metrics()
        if (m.samples.get(refused_key) or 0) > 0:
            break
    assert (m.samples.get(refused_key) or 0) > 0, f"cerflow never refused a request:\n{m.text}"

    # The Collector retries each refused request (RetryInfo says 1 s) until all are in.
    deadline = time.monotonic() + 60
    while True:
        m = cf.metrics()
        if m.get("cer_journey_requests_total", journey="checkout") == sent:
            break
        if time.monotonic() > deadline:
            pytest.fail(
                f"{m.get('cer_journey_requests_total', journey='checkout')} of {sent} spans recorded after 60s\n"
                f"{m.text}\n--- otelcol ---\n{col.log()[-5000:]}",
                pytrace=False,
            )
        time.sleep(0.2)
    received = m.get("cerflow_received_spans_total", transport="grpc")
    processed = m.get("cerflow_processed_spans_total")
    refused = sum(v for v in m.series("cerflow_refused_spans_total").values())
    queue_full = m.get("cerflow_refused_spans_total", reason="queue_full")
    # Exactly once: every span sent is processed once, and nothing else was.
    assert processed == sent
    assert m.get("cerflow_unmatched_spans_total") == 0
    # received = processed + refused, and every refusal was the full queue.
    assert received == processed + refused, (received, processed, refused)
    assert refused == queue_full > 0
    # Whole requests were refused: a multiple of the Collector's 500-span batches
    # is not guaranteed (the last batch of a flush is smaller), but no partial success.
    log = col.log()
    assert "partial success" not in log.lower()
    assert "dropping data" not in log.lower(), log[-5000:]
    # The Collector read cerflow's RetryInfo: it logged one throttled retry, waiting the
    # 1 s cerflow asked for, per refused request.
    throttled = log.count("Throttle (1s), error: rpc error: code = Unavailable")
    assert throttled == m.samples[refused_key], (throttled, m.samples[refused_key], log[-5000:])
    print(f"sent {sent} spans; cerflow refused {m.samples[refused_key]:.0f} requests "
          f"({queue_full:.0f} spans) and received {received:.0f} in all")


# --------------------------------------------------------------------------- the build itself

def test_the_collector_has_exactly_the_pinned_components(otelcol_bin):
    """tests/otelcol/main.go lists these and only these (under their v0.165 type names)."""
    out = subprocess.run([str(otelcol_bin), "components"], capture_output=True, text=True, timeout=30, check=True).stdout
    kinds: dict[str, set] = {}
    section = None
    for line in out.splitlines():
        if line and not line.startswith(" "):
            section, _, rest = line.partition(":")
            kinds[section] = set()
        elif line.startswith("    - name: ") or line.startswith("    - scheme: "):
            kinds[section].add(line.split(": ", 1)[1])
    assert kinds == {
        "buildinfo": set(),
        "receivers": {"otlp", "kafka"},
        "processors": {"batch"},
        "exporters": {"otlp_grpc", "otlp_http", "debug", "nop", "load_balancing", "kafka", "prometheus"},
        "connectors": {"span_metrics"},
        "extensions": set(),
        "providers": {"env", "file", "yaml"},
    }, out
