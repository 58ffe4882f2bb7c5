"""cerflow fed by the real OpenTelemetry Python SDK, over OTLP/gRPC and OTLP/HTTP
(protobuf), with and without gzip, and by hand-written OTLP/JSON; every exported
value is checked against figures worked out by hand (see scenario.py)."""

from __future__ import annotations

import gzip
import json
import os
import time

import grpc
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http import Compression as HttpCompression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.trace import SpanKind, Status, StatusCode

import scenario
from conftest import http_session, key

KINDS = {
    "server": SpanKind.SERVER,
    "client": SpanKind.CLIENT,
    "internal": SpanKind.INTERNAL,
    "consumer": SpanKind.CONSUMER,
    "producer": SpanKind.PRODUCER,
}


class Recording(SpanExporter):
    """Passes spans to the real exporter and keeps every result, so a failed export
    fails the test instead of being swallowed by the span processor."""

    def __init__(self, inner: SpanExporter):
        self.inner = inner
        self.results: list[SpanExportResult] = []
        self.spans = 0

    def export(self, spans):
        result = self.inner.export(spans)
        self.results.append(result)
        self.spans += len(spans)
        return result

    def shutdown(self):
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


def send_scenario(exporter: SpanExporter, batch: bool) -> Recording:
    rec = Recording(exporter)
    processor = BatchSpanProcessor(rec, schedule_delay_millis=60_000) if batch else SimpleSpanProcessor(rec)
    provider = TracerProvider(resource=Resource.create(scenario.RESOURCE))
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("cerflow-e2e", "1.0")
    now = time.time_ns()
    for name, kind, dur_ms, attrs, status, events, ago_s in scenario.SPANS:
        end = now - ago_s * scenario.S
        start = end - dur_ms * scenario.MS
        span = tracer.start_span(name, kind=KINDS[kind], attributes=attrs, start_time=start)
        for e in events:
            span.add_event(e, timestamp=start + 1)
        if status == "ok":
            span.set_status(Status(StatusCode.OK))
        elif status == "error":
            span.set_status(Status(StatusCode.ERROR, "boom"))
        span.end(end_time=end)
    assert provider.force_flush(30_000), "force_flush timed out"
    provider.shutdown()
    assert rec.spans == scenario.N_SPANS
    assert rec.results and all(r == SpanExportResult.SUCCESS for r in rec.results), rec.results
    return rec


def check_scenario(cf, transport: str) -> None:
    m = cf.wait_for(scenario.expected(transport))
    scenario.check_series_sets(m)
    # A window with no requests has no ratio: none is exported for journeys never seen.
    assert m.types["cer_journey_requests_total"] == "counter"
    assert m.types["cer_sli_availability_ratio"] == "gauge"
    assert m.types["cer_journey_duration_seconds"] == "histogram"


@pytest.mark.parametrize(
    "compression,batch",
    [(None, False), (grpc.Compression.Gzip, True)],
    ids=["plain-simple", "gzip-batch"],
)
def test_grpc_exporter(start_cerflow, compression, batch):
    cf = start_cerflow(scenario.CONFIG)
    exporter = GrpcExporter(endpoint=cf.grpc_endpoint, insecure=True, compression=compression, timeout=10)
    send_scenario(exporter, batch)
    check_scenario(cf, "grpc")


@pytest.mark.parametrize(
    "compression,batch",
    [(HttpCompression.NoCompression, True), (HttpCompression.Gzip, False)],
    ids=["plain-batch", "gzip-simple"],
)
def test_http_protobuf_exporter(start_cerflow, compression, batch):
    cf = start_cerflow(scenario.CONFIG)
    exporter = HttpExporter(endpoint=cf.http_traces_url, compression=compression, timeout=10, session=http_session())
    send_scenario(exporter, batch)
    check_scenario(cf, "http")


def test_both_transports_add_up(start_cerflow):
    """The same spans over gRPC and HTTP land in the same series."""
    cf = start_cerflow(scenario.CONFIG)
    send_scenario(GrpcExporter(endpoint=cf.grpc_endpoint, insecure=True, timeout=10), batch=False)
    send_scenario(HttpExporter(endpoint=cf.http_traces_url, timeout=10, session=http_session()), batch=True)
    gold = dict(journey="checkout", cloud_region="eu-west-1", app_plan_tier="gold")
    m = cf.wait_for({
        key("cerflow_received_spans_total", transport="grpc"): scenario.N_SPANS,
        key("cerflow_received_spans_total", transport="http"): scenario.N_SPANS,
        key("cer_journey_requests_total", **gold): 10,
        key("cer_journey_errors_total", **gold): 2,
        key("cer_sli_availability_ratio", window="1m", **gold): 0.8,
        key("cer_journey_requests_per_second", window="1m", **gold): 10 / 60,
        key("cer_journey_latency_seconds", window="1m", quantile="0.5", **gold): 0.2,
        key("cer_journey_requests_total", journey="search"): 8,
        key("cerflow_late_spans_total"): 2,
        key("cerflow_unmatched_spans_total"): 6,
    })
    scenario.check_series_sets(m)


# --------------------------------------------------------------------------- OTLP/JSON by hand

def _attr(k, v):
    if isinstance(v, bool):
        return {"key": k, "value": {"boolValue": v}}
    if isinstance(v, int):
        return {"key": k, "value": {"intValue": str(v)}}  # int64 as a JSON string
    if isinstance(v, float):
        return {"key": k, "value": {"doubleValue": v}}
    return {"key": k, "value": {"stringValue": v}}


def json_request(spans: list[dict], resource: dict) -> dict:
    return {
        "resourceSpans": [{
            "resource": {"attributes": [_attr(k, v) for k, v in resource.items()]},
            "scopeSpans": [{"scope": {"name": "hand-written", "version": "1"}, "spans": spans}],
        }]
    }


def json_span(name: str, kind: int, start_ns: int, end_ns: int, attrs: dict, status: int = 0, events=()):
    return {
        "traceId": os.urandom(16).hex(),
        "spanId": os.urandom(8).hex(),
        "name": name,
        "kind": kind,
        "startTimeUnixNano": str(start_ns),
        "endTimeUnixNano": str(end_ns),
        "attributes": [_attr(k, v) for k, v in attrs.items()],
        "events": [{"timeUnixNano": str(start_ns), "name": e} for e in events],
        "status": {"code": status, "message": ""},
    }


SERVER, CLIENT = 2, 3
ERROR = 2


def post_json(cf, body: dict, gzipped: bool):
    data = json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if gzipped:
        data = gzip.compress(data)
        headers["Content-Encoding"] = "gzip"
    return cf.http.post(cf.http_traces_url, data=data, headers=headers, timeout=10)


def test_otlp_json_by_hand(start_cerflow):
    cf = start_cerflow(scenario.CONFIG)
    end = time.time_ns() - 2 * scenario.S
    ms = scenario.MS
    resource = {"service.name": "shop", "cloud.region": "eu-west-1"}
    # Plain JSON: 2 gold checkouts (one 503) and 1 search.
    plain = json_request([
        json_span("POST /checkout", SERVER, end - 100 * ms, end, {"app.plan.tier": "gold"}),
        json_span("POST /checkout", SERVER, end - 200 * ms, end, {"app.plan.tier": "gold", "http.response.status_code": 503}),
        json_span("GET /search", SERVER, end - 50 * ms, end, {}),
    ], resource)
    r = post_json(cf, plain, gzipped=False)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert r.json() == {}
    # Gzipped JSON: 2 more gold checkouts, one slow (800 ms) and one incorrect (event).
    zipped = json_request([
        json_span("POST /checkout", SERVER, end - 800 * ms, end, {"app.plan.tier": "gold"}),
        json_span("POST /checkout", SERVER, end - 100 * ms, end, {"app.plan.tier": "gold"}, events=["order_total_mismatch"]),
    ], resource)
    r = post_json(cf, zipped, gzipped=True)
    assert r.status_code == 200, r.text
    assert r.json() == {}
    # One valid span and one whose end is before its start: a partial success.
    partial = json_request([
        json_span("POST /checkout", SERVER, end - 100 * ms, end, {"app.plan.tier": "gold"}, status=ERROR),
        json_span("POST /checkout", SERVER, end, end - 100 * ms, {"app.plan.tier": "gold"}),
    ], resource)
    r = post_json(cf, partial, gzipped=True)
    assert r.status_code == 200, r.text
    ps = r.json()["partialSuccess"]
    assert int(ps["rejectedSpans"]) == 1, ps
    assert "end time is before start time" in ps["errorMessage"], ps

    gold = dict(journey="checkout", cloud_region="eu-west-1", app_plan_tier="gold")
    g1m = dict(gold, window="1m")
    # gold: 5 requests (100, 200/503, 800, 100/incorrect, 100/ERROR): 2 errors, 1 slow,
    # 1 incorrect; latencies sorted 100,100,100,200,800 -> p50 rank 3 = 100 ms, p90 = 800 ms.
    m = cf.wait_for({
        key("cer_journey_requests_total", **gold): 5,
        key("cer_journey_errors_total", **gold): 2,
        key("cer_journey_slow_total", **gold): 1,
        key("cer_journey_incorrect_total", **gold): 1,
        key("cer_sli_availability_ratio", **g1m): 0.6,
        key("cer_sli_latency_ratio", **g1m): 0.8,
        key("cer_sli_correctness_ratio", **g1m): 0.8,
        key("cer_journey_latency_seconds", quantile="0.5", **g1m): 0.1,
        key("cer_journey_latency_seconds", quantile="0.9", **g1m): 0.8,
        key("cer_journey_requests_per_second", **g1m): 5 / 60,
        key("cer_journey_requests_total", journey="search"): 1,
        key("cer_sli_availability_ratio", journey="search", window="1m"): 1,
        key("cer_journey_latency_seconds", journey="search", window="1m", quantile="0.99"): 0.05,
        key("cerflow_received_spans_total", transport="http"): 7,
        key("cerflow_received_spans_total", transport="grpc"): 0,
        key("cerflow_refused_spans_total", reason="invalid_span"): 1,
        key("cerflow_processed_spans_total"): 6,
    })
    assert len(m.label_sets("cer_journey_requests_total")) == 2


def test_otlp_json_refusals(start_cerflow):
    """Bodies cerflow must refuse, each with the OTLP status and a counted reason."""
    cf = start_cerflow(scenario.CONFIG)

    def post(data: bytes, **headers):
        # One connection per request: after a refusal sent before the body was read,
        # cerflow may close a keep-alive connection without saying so (reported
        # separately), which would break the next request on it.
        with http_session() as s:
            return s.post(cf.http_traces_url, data=data, headers=dict(headers, Connection="close"), timeout=10)

    r = post(b"{not json", **{"Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.json()["code"] == 3
    r = post(b"not gzip", **{"Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert r.status_code == 400, r.text
    r = post(b"{}", **{"Content-Type": "text/plain"})
    assert r.status_code == 415, r.text
    r = post(b"{}", **{"Content-Type": "application/json", "Content-Encoding": "br"})
    assert r.status_code == 415, r.text
    # An empty request is valid and accepted.
    r = post(b"{}", **{"Content-Type": "application/json; charset=utf-8"})
    assert r.status_code == 200, r.text
    assert r.json() == {}
    cf.wait_for({
        key("cerflow_refused_requests_total", reason="malformed"): 1,
        key("cerflow_refused_requests_total", reason="bad_encoding"): 2,
        key("cerflow_refused_requests_total", reason="unsupported_media_type"): 1,
        key("cerflow_received_spans_total", transport="http"): 0,
    })


def test_windows_and_clock_skew(start_cerflow):
    """Event time decides the window: a span that ended 2 minutes ago is in the 5m
    window but not the 1m one (which then has no ratio at all, rather than 1 or NaN);
    a span from the future is recorded as ending now, and counted as clamped when it
    is further ahead than max_clock_skew (30s by default)."""
    cf = start_cerflow("""\
journeys:
  - name: old
    match: {span_name: old}
  - name: future
    match: {span_name: future}
""")
    now = time.time_ns()
    ms, s = scenario.MS, scenario.S
    body = json_request([
        json_span("old", SERVER, now - 120 * s - 100 * ms, now - 120 * s, {}),
        json_span("future", SERVER, now + 120 * s - 200 * ms, now + 120 * s, {}),  # 2 min ahead: clamped
        json_span("future", SERVER, now + 10 * s - 100 * ms, now + 10 * s, {}),    # within the skew
    ], {"service.name": "clock"})
    r = post_json(cf, body, gzipped=False)
    assert r.status_code == 200, r.text
    m = cf.wait_for({
        key("cer_journey_requests_total", journey="old"): 1,
        key("cer_sli_availability_ratio", journey="old", window="5m"): 1,
        key("cer_sli_availability_ratio", journey="old", window="1m"): None,
        key("cer_sli_latency_ratio", journey="old", window="1m"): None,
        key("cer_journey_latency_seconds", journey="old", window="1m", quantile="0.5"): None,
        key("cer_journey_requests_per_second", journey="old", window="1m"): 0,
        key("cer_journey_requests_per_second", journey="old", window="5m"): 1 / 300,
        key("cer_journey_latency_seconds", journey="old", window="5m", quantile="0.5"): 0.1,
        key("cer_journey_requests_total", journey="future"): 2,
        key("cer_journey_requests_per_second", journey="future", window="1m"): 2 / 60,
        # The duration is the span's own (end - start), not shortened by the clamp.
        key("cer_journey_latency_seconds", journey="future", window="1m", quantile="0.99"): 0.2,
        key("cerflow_clamped_spans_total"): 1,
        key("cerflow_late_spans_total"): 0,
    })
    assert m.get("cer_sli_availability_ratio", journey="future", window="1m") == 1
