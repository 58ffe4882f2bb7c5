"""The Python SDK -> the real OpenTelemetry Collector (OTLP receiver, batch, `kafka`
exporter writing `otlp_proto`, partitioned by trace id) -> a real Apache Kafka broker
(KRaft) -> cerflow's `receivers.kafka`: exactly the figures scenario.py works out by
hand for the SDK sending directly, all received over Kafka.
"""

from __future__ import annotations

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

import scenario
from collector import otelcol_bin, start_otelcol  # noqa: F401 (fixtures)
from conftest import key
from kafka_broker import kafka_broker  # noqa: F401 (fixture)
from test_python_sdk import check_scenario, send_scenario

TO_KAFKA = """\
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
processors:
  batch:
    timeout: 100ms
exporters:
  kafka:
    brokers: ["{bootstrap}"]
    traces:
      topic: otlp_spans
      encoding: otlp_proto
    partition_traces_by_id: true
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [kafka]
"""


def test_sdk_to_collector_to_kafka_to_cerflow(kafka_broker, start_cerflow, start_otelcol):
    # kafka_broker first: fixtures stop in reverse order, so the broker outlives cerflow.
    kafka_broker.create_topic("otlp_spans", 4)
    cf = start_cerflow(
        scenario.CONFIG,
        receiver_sections=(
            "  kafka:\n"
            f"    brokers: [\"{kafka_broker.bootstrap}\"]\n"
            "    initial_offset: earliest\n"
        ),
    )
    # The topic and group are the defaults: otlp_spans, cerflow.
    cf.wait_for({key("cerflow_kafka_connected"): 1, key("cerflow_kafka_partitions"): 4}, timeout=60)
    col = start_otelcol(TO_KAFKA, bootstrap=kafka_broker.bootstrap)
    send_scenario(GrpcExporter(endpoint=col.grpc_endpoint, insecure=True, timeout=10), batch=True)
    check_scenario(cf, "kafka")
    m = cf.metrics()
    assert m.samples[key("cerflow_refused_requests_total", reason="malformed")] == 0
