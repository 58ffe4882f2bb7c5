"""Capture real OTLP trace request bodies from the Python OpenTelemetry SDK.

Starts a tiny HTTP server on 127.0.0.1 (a free port) that saves every POST body,
points the SDK's OTLP/HTTP protobuf exporter at it, emits a few differently shaped
batches, and writes:

  corpus/otlp_protobuf/sdk-*.pb    the exact bytes the exporter sent
  corpus/otlp_json/sdk-*.json      the same requests in OTLP JSON (hex ids, enums as
                                   integers, int64 as strings), converted with
                                   protobuf's json_format and the OTLP JSON rules

Run from the repository root:  .venv/bin/python fuzz/capture_seeds.py
"""

import base64
import gzip
import http.server
import json
import os
import threading
import time

from google.protobuf import json_format
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, BatchSpanProcessor
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

HERE = os.path.dirname(os.path.abspath(__file__))
PB_DIR = os.path.join(HERE, "corpus", "otlp_protobuf")
JSON_DIR = os.path.join(HERE, "corpus", "otlp_json")

bodies = []


class Saver(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n)
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        bodies.append(body)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def emit(endpoint, resource, batch, scenario):
    provider = TracerProvider(resource=resource)
    exporter = OTLPSpanExporter(endpoint=endpoint)
    proc = BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter)
    provider.add_span_processor(proc)
    scenario(provider)
    provider.force_flush()
    provider.shutdown()


def checkout(provider):
    t = provider.get_tracer("shop.checkout", "1.4.2", schema_url="https://opentelemetry.io/schemas/1.26.0")
    with t.start_as_current_span("POST /checkout", kind=SpanKind.SERVER,
                                 attributes={"http.request.method": "POST",
                                             "http.route": "/checkout",
                                             "http.response.status_code": 200,
                                             "app.plan.tier": "pro",
                                             "app.cart.items": 3,
                                             "app.cart.total": 129.95,
                                             "app.beta": True}):
        with t.start_as_current_span("SELECT orders", kind=SpanKind.CLIENT,
                                     attributes={"db.system": "postgresql",
                                                 "db.statement": "SELECT * FROM orders WHERE id = $1"}):
            pass
        with t.start_as_current_span("charge", kind=SpanKind.INTERNAL) as s:
            s.add_event("retry", {"attempt": 2})
            s.set_status(Status(StatusCode.OK))


def failing(provider):
    t = provider.get_tracer("shop.login")
    with t.start_as_current_span("POST /login", kind=SpanKind.SERVER) as s:
        s.set_attribute("http.response.status_code", 503)
        s.set_attribute("app.tags", ["a", "b", "\u00e9t\u00e9"])
        s.set_attribute("app.ints", [1, 2, 3])
        s.set_attribute("app.floats", [0.5, -1.25])
        s.set_attribute("app.bools", [True, False])
        try:
            raise ValueError("database is down \U0001F600")
        except ValueError as e:
            s.record_exception(e)
            s.set_status(Status(StatusCode.ERROR, "database is down"))


def consumer_with_links(provider):
    t = provider.get_tracer("shop.queue")
    with t.start_as_current_span("publish", kind=SpanKind.PRODUCER) as p:
        ctx = p.get_span_context()
    for i in range(5):
        with t.start_as_current_span(f"process order-{i}", kind=SpanKind.CONSUMER,
                                     links=[Link(ctx, {"link.index": i})],
                                     attributes={"messaging.system": "kafka",
                                                 "messaging.destination.name": "orders"}):
            pass


def many_spans(provider):
    t = provider.get_tracer("shop.search")
    for i in range(40):
        with t.start_as_current_span("GET /search", kind=SpanKind.SERVER,
                                     attributes={"cloud.region": ["eu-west-1", "us-east-1"][i % 2],
                                                 "http.response.status_code": 200 if i % 7 else 500,
                                                 "app.query": "shoes size " + str(i)}):
            pass


def to_otlp_json(pb_bytes):
    """OTLP JSON: proto3 JSON with lowerCamelCase names, but ids as hex, enums as ints."""
    req = ExportTraceServiceRequest()
    req.ParseFromString(pb_bytes)
    d = json_format.MessageToDict(req, use_integers_for_enums=True)

    def fix(o, key=None):
        if isinstance(o, dict):
            return {k: fix(v, k) for k, v in o.items()}
        if isinstance(o, list):
            return [fix(v, key) for v in o]
        if key in ("traceId", "spanId", "parentSpanId") and isinstance(o, str):
            return base64.b64decode(o).hex()
        return o

    return json.dumps(fix(d), separators=(",", ":")).encode()


def main():
    os.makedirs(PB_DIR, exist_ok=True)
    os.makedirs(JSON_DIR, exist_ok=True)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Saver)
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{port}/v1/traces"
    shop = Resource.create({"service.name": "shop", "service.version": "2.3.1",
                            "deployment.environment.name": "prod", "cloud.region": "eu-west-1"})
    bare = Resource.get_empty()
    emit(endpoint, shop, True, checkout)
    emit(endpoint, shop, True, failing)
    emit(endpoint, Resource.create({"service.name": "queue-worker"}), True, consumer_with_links)
    emit(endpoint, shop, True, many_spans)
    emit(endpoint, bare, False, checkout)
    time.sleep(0.2)
    server.shutdown()
    for i, b in enumerate(bodies):
        with open(os.path.join(PB_DIR, f"sdk-{i:02}.pb"), "wb") as f:
            f.write(b)
        with open(os.path.join(JSON_DIR, f"sdk-{i:02}.json"), "wb") as f:
            f.write(to_otlp_json(b))
    print(f"captured {len(bodies)} request bodies ({sum(map(len, bodies))} bytes) from port {port}")


if __name__ == "__main__":
    main()
