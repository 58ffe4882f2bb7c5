"""A journey measured from the real OpenTelemetry Python SDK's metrics exporter (OTLP/gRPC,
cumulative temporality, the SDK's default) gives the same counts and SLIs as the same
requests sent as spans by the SDK's trace exporter; figures worked out by hand."""

from __future__ import annotations

import time

from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from conftest import key

JOURNEYS = """\
histogram:
  buckets: [0.1, 0.25, 0.5, 1]
journeys:
  - name: spans
    match: { span_name: POST /checkout }
    latency_threshold: 250ms
  - name: metrics
    latency_threshold: 250ms
    metrics:
      - name: http.server.request.duration
        match: { attributes: [{ key: http.route, equals: /checkout }] }
"""

# The same 10 requests both ways: (seconds, failed). Slow (> 250 ms, a bucket bound of the
# histogram, so exact): 0.4, 0.4, 2.0 = 3. Failed: 2. Availability 8/10, latency 7/10.
FIRST = [(0.05, False), (0.05, False), (0.05, True), (0.2, False)]
SECOND = [(0.05, True), (0.2, False), (0.2, False), (0.4, False), (0.4, False), (2.0, False)]


def test_python_sdk_cumulative_histogram_gives_the_slis_of_the_same_spans(start_cerflow):
    cf = start_cerflow(JOURNEYS)
    resource = Resource.create({"service.name": "shop"})
    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=cf.grpc_endpoint, insecure=True),
        export_interval_millis=3_600_000,
    )
    # The SDK's default bounds are made for milliseconds; a duration in seconds names its own.
    view = View(
        instrument_name="http.server.request.duration",
        aggregation=ExplicitBucketHistogramAggregation([0.1, 0.25, 0.5, 1.0]),
    )
    meters = MeterProvider(resource=resource, metric_readers=[reader], views=[view])
    tracers = TracerProvider(resource=resource)
    tracers.add_span_processor(
        SimpleSpanProcessor(OTLPSpanExporter(endpoint=cf.grpc_endpoint, insecure=True))
    )
    try:
        duration = meters.get_meter("e2e").create_histogram("http.server.request.duration", unit="s")
        tracer = tracers.get_tracer("e2e")

        def request(seconds: float, failed: bool):
            code = 503 if failed else 200
            duration.record(seconds, {"http.route": "/checkout", "http.response.status_code": code})
            end = time.time_ns()
            span = tracer.start_span("POST /checkout", kind=SpanKind.SERVER, start_time=end - int(seconds * 1e9))
            if failed:
                span.set_status(Status(StatusCode.ERROR))
            span.end(end_time=end)

        # Two exports of one cumulative stream per status: the second is counted as its
        # increment over the first (the SDK's start time is after cerflow's: the first
        # export counts whole).
        for r in FIRST:
            request(*r)
        assert meters.force_flush(10_000)
        cf.wait_for({key("cer_journey_requests_total", journey="metrics"): 4.0})
        for r in SECOND:
            request(*r)
        assert meters.force_flush(10_000)
        expected = {}
        for j in ("spans", "metrics"):
            expected[key("cer_journey_requests_total", journey=j)] = 10.0
            expected[key("cer_journey_errors_total", journey=j)] = 2.0
            expected[key("cer_journey_slow_total", journey=j)] = 3.0
            for w in ("1m", "5m"):
                expected[key("cer_sli_availability_ratio", journey=j, window=w)] = 0.8
                expected[key("cer_sli_latency_ratio", journey=j, window=w)] = 0.7
            # Buckets le 0.1, 0.25, 0.5, 1, +Inf: 4, 7, 9, 9, 10 (cumulative).
            for le, n in (("0.1", 4.0), ("0.25", 7.0), ("0.5", 9.0), ("1", 9.0), ("+Inf", 10.0)):
                expected[key("cer_journey_duration_seconds_bucket", journey=j, le=le)] = n
        m = cf.wait_for(expected)
        assert m.get("cerflow_refused_data_points_total", reason="bad_buckets") == 0.0
    finally:
        meters.shutdown()
        tracers.shutdown()
