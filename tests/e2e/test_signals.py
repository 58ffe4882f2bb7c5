"""Operational signals fed by the real OpenTelemetry Python SDK's metrics exporter
(OTLP/gRPC, cumulative temporality, as the SDK exports by default): a cpu gauge and a
restart counter judged in one-minute time slices, figures worked out by hand."""

from __future__ import annotations

import time

from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

from conftest import key

SIGNALS = """\
journeys:
  - name: checkout
    match: { span_name: POST /checkout }
    signals:
      - name: k8s.pod.cpu.utilization
        match: { resource_attributes: [{ key: k8s.deployment.name, equals: checkout }] }
        aggregate: max
        max: 0.8
      - { name: k8s.container.restarts, aggregate: rate, max: 0.01 }
"""


def wait_for_a_fresh_slice(slice_s: int = 60, room_s: int = 25):
    """Everything below must land in one slice (the points carry the export time):
    start early enough in a slice to finish within it."""
    into = time.time() % slice_s
    if into > slice_s - room_s:
        time.sleep(slice_s - into + 0.5)


def test_python_sdk_cumulative_metrics_give_exact_slices(start_cerflow):
    cf = start_cerflow(SIGNALS)
    wait_for_a_fresh_slice()
    # The SDK's start time is after cerflow's: the counter's first value counts whole.
    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=cf.grpc_endpoint, insecure=True),
        export_interval_millis=3_600_000,
    )
    provider = MeterProvider(
        resource=Resource.create({"service.name": "checkout", "k8s.deployment.name": "checkout"}),
        metric_readers=[reader],
    )
    try:
        meter = provider.get_meter("e2e")
        cpu = meter.create_gauge("k8s.pod.cpu.utilization", unit="1")
        restarts = meter.create_counter("k8s.container.restarts", unit="{restart}")

        # Export 1: cpu 0.5 (max 0.5 <= 0.8), restarts 0 (rate 0 <= 0.01): the current
        # slice is good, 1 of 1.
        cpu.set(0.5)
        restarts.add(0)
        assert provider.force_flush(10_000)
        j = {"journey": "checkout"}
        cpu_s = {**j, "signal": "k8s.pod.cpu.utilization"}
        rst_s = {**j, "signal": "k8s.container.restarts"}
        cf.wait_for({
            key("cer_sli_operations_ratio", **j, window="1m"): 1.0,
            key("cer_sli_operations_ratio", **j, window="5m"): 1.0,
            key("cer_signal_value", **cpu_s, window="1m"): 0.5,
            key("cer_signal_value", **rst_s, window="1m"): 0.0,
            key("cer_signal_ok", **cpu_s): 1.0,
            key("cer_signal_ok", **rst_s): 1.0,
            key("cerflow_received_data_points_total"): 2.0,
        })

        # Export 2, same slice: the cumulative counter says 3, an increment of 3 in the
        # slice: rate 3 / 60 s = 0.05 > 0.01. The gauge repeats 0.5. The slice turns bad:
        # 0 good of 1 with data.
        restarts.add(3)
        assert provider.force_flush(10_000)
        m = cf.wait_for({
            key("cer_signal_ok", **rst_s): 0.0,
            key("cer_signal_value", **rst_s, window="1m"): 3 / 60,
            key("cer_sli_operations_ratio", **j, window="1m"): 0.0,
            key("cer_signal_ok", **cpu_s): 1.0,
            key("cerflow_received_data_points_total"): 4.0,
        })
        assert m.get("cerflow_refused_data_points_total", reason="unknown_unit") == 0.0
    finally:
        provider.shutdown()
