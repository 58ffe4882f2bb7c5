"""A real Prometheus (/usr/bin/prometheus) scrapes cerflow every second; its query API
must return the SLIs cerflow computed from spans sent with the Python SDK."""

from __future__ import annotations

import signal
from pathlib import Path
import subprocess
import time

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from conftest import free_ports, http_session, which_or_fail

CONFIG = """\
journeys:
  - name: checkout
    match: {span_name: POST /checkout, kind: server}
    latency_threshold: 300ms
"""

PROMETHEUS_CONFIG = """\
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: cerflow
    metrics_path: /metrics
    static_configs:
      - targets: ["127.0.0.1:{port}"]
"""


@pytest.fixture
def prometheus(tmp_path):
    """Starts Prometheus on a free port with empty storage; yields a function that
    starts it scraping a given cerflow port."""
    exe = which_or_fail("prometheus", "/usr/bin/prometheus")
    procs = []

    def start(target_port: int, rule_file: str | None = None, flags: tuple = ()):
        (port,) = free_ports(1)
        cfg = tmp_path / "prometheus.yml"
        text = PROMETHEUS_CONFIG.format(port=target_port)
        if rule_file is not None:
            text += f"rule_files: [{rule_file!r}]\n"
        cfg.write_text(text)
        log = open(tmp_path / "prometheus.log", "wb")
        proc = subprocess.Popen(
            [
                exe,
                f"--config.file={cfg}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
                *flags,
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
        )
        procs.append((proc, log))
        base = f"http://127.0.0.1:{port}"
        http = http_session()
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                pytest.fail(f"prometheus exited with {proc.returncode}:\n{(tmp_path / 'prometheus.log').read_text()}")
            try:
                if http.get(f"{base}/-/ready", timeout=1).status_code == 200:
                    return base
            except Exception:
                pass
            if time.monotonic() > deadline:
                pytest.fail("prometheus was not ready within 30s")
            time.sleep(0.1)

    yield start
    for proc, log in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        log.close()
    print((tmp_path / "prometheus.log").read_text(errors="replace"))


def query(http, base: str, promql: str):
    """The value of an instant query's single sample, or None while there is none."""
    r = http.get(f"{base}/api/v1/query", params={"query": promql}, timeout=5)
    r.raise_for_status()
    body = r.json()
    assert body["status"] == "success", body
    result = body["data"]["result"]
    if not result:
        return None
    assert len(result) == 1, result
    return float(result[0]["value"][1])


def wait_query(http, base: str, promql: str, want: float, timeout: float = 60):
    deadline = time.monotonic() + timeout
    got = None
    while time.monotonic() < deadline:
        got = query(http, base, promql)
        if got == want:
            return got
        time.sleep(0.5)
    targets = http.get(f"{base}/api/v1/targets", timeout=5).json()
    pytest.fail(f"{promql}: expected {want}, still {got} after {timeout}s; targets: {targets}", pytrace=False)


def test_prometheus_scrapes_slis(start_cerflow, prometheus):
    cf = start_cerflow(CONFIG)
    base = prometheus(cf.prom_port)

    provider = TracerProvider(resource=Resource.create({"service.name": "shop"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=cf.grpc_endpoint, insecure=True, timeout=10)))
    tracer = provider.get_tracer("cerflow-e2e")
    end = time.time_ns() - 2_000_000_000
    # 4 checkouts: 3 good, 1 ERROR -> availability 0.75; one of 400 ms is slow -> latency 0.75.
    for dur_ms, status in ((100, None), (200, None), (400, None), (100, StatusCode.ERROR)):
        span = tracer.start_span("POST /checkout", kind=SpanKind.SERVER, start_time=end - dur_ms * 1_000_000)
        if status is not None:
            span.set_status(Status(status))
        span.end(end_time=end)
    assert provider.force_flush(10_000)
    provider.shutdown()

    http = http_session()
    wait_query(http, base, 'cer_sli_availability_ratio{journey="checkout",window="1m"}', 0.75)
    assert query(http, base, 'up{job="cerflow"}') == 1
    assert query(http, base, 'sum(cer_journey_requests_total{journey="checkout"})') == 4
    assert query(http, base, 'cer_sli_latency_ratio{journey="checkout",window="1m"}') == 0.75
    assert query(http, base, 'cer_journey_errors_total{journey="checkout"}') == 1
    assert query(http, base, 'cer_journey_requests_per_second{journey="checkout",window="5m"}') == 4 / 300
    assert query(http, base, 'cer_journey_latency_seconds{journey="checkout",window="1m",quantile="0.5"}') == 0.1
    assert query(http, base, 'cer_journey_duration_seconds_count{journey="checkout"}') == 4
    assert query(http, base, 'cerflow_received_spans_total{transport="grpc"}') == 4
    # The histogram is usable with histogram_quantile: 3 of 4 at or under 0.25 s.
    assert query(http, base, 'cer_journey_duration_seconds_bucket{journey="checkout",le="0.25"}') == 3


RULES = Path(__file__).resolve().parents[2] / "examples" / "prometheus-rules-extra.yaml"


def test_example_rules_load_and_fire(start_cerflow, prometheus):
    """examples/prometheus-rules-extra.yaml passes promtool and fires on a bad journey."""
    promtool = which_or_fail("promtool", "/usr/bin/promtool")
    check = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    cf = start_cerflow(CONFIG)
    base = prometheus(cf.prom_port, str(RULES))
    provider = TracerProvider(resource=Resource.create({"service.name": "shop"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=cf.grpc_endpoint, insecure=True, timeout=10)))
    tracer = provider.get_tracer("cerflow-e2e")
    end = time.time_ns() - 2_000_000_000
    # 1 of 4 failed (burn 250 against 0.999) and 1 of 4 slow (burn 25 against 0.99): both
    # components are 0, there is no correctness rule, so the score is 0.
    for dur_ms, status in ((100, None), (200, None), (400, None), (100, StatusCode.ERROR)):
        span = tracer.start_span("POST /checkout", kind=SpanKind.SERVER, start_time=end - dur_ms * 1_000_000)
        if status is not None:
            span.set_status(Status(status))
        span.end(end_time=end)
    assert provider.force_flush(10_000)
    provider.shutdown()
    http = http_session()
    wait_query(http, base, 'cer_journey_score{journey="checkout",window="5m"}', 0.0)
    deadline = time.monotonic() + 60
    firing = []
    while time.monotonic() < deadline:
        alerts = http.get(f"{base}/api/v1/alerts", timeout=5).json()["data"]["alerts"]
        firing = [a for a in alerts if a["state"] == "firing"]
        if any(a["labels"]["alertname"] == "CerJourneyScoreLow" for a in firing):
            break
        time.sleep(0.5)
    names = sorted(a["labels"]["alertname"] for a in firing)
    assert names == ["CerJourneyScoreLow"], firing
    assert firing[0]["labels"]["journey"] == "checkout"


EXEMPLAR_CONFIG = """\
journeys:
  - name: checkout
    match: {span_name: POST /checkout, kind: server}
    latency_threshold: 300ms
histogram: {buckets: [0.1, 0.5]}
"""


def test_prometheus_stores_exemplars_of_the_exact_bad_requests(start_cerflow, prometheus):
    """Prometheus with exemplar storage scrapes OpenMetrics; query_exemplars returns the
    trace and span ids of the very spans that failed, were slow, and were the slowest of
    their histogram bucket."""
    cf = start_cerflow(EXEMPLAR_CONFIG)
    base = prometheus(cf.prom_port, flags=("--enable-feature=exemplar-storage",))

    provider = TracerProvider(resource=Resource.create({"service.name": "shop"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=cf.grpc_endpoint, insecure=True, timeout=10)))
    tracer = provider.get_tracer("cerflow-e2e")
    end = time.time_ns() - 2_000_000_000
    ids = {}
    # good 50 ms and good 80 ms (bucket le=0.1: 80 ms is its slowest), failed 60 ms
    # (le=0.1), slow 400 ms (le=0.5, its only one), one 700 ms failed and slow (+Inf).
    cases = (("good50", 50, False), ("good80", 80, False), ("failed", 60, True),
             ("slow", 400, False), ("both", 700, True))
    for i, (name, dur_ms, failed) in enumerate(cases):
        # One millisecond apart, so "latest" is well defined: "both" ends last.
        end_i = end + i * 1_000_000
        span = tracer.start_span("POST /checkout", kind=SpanKind.SERVER, start_time=end_i - dur_ms * 1_000_000)
        if failed:
            span.set_status(Status(StatusCode.ERROR))
        ctx = span.get_span_context()
        ids[name] = (format(ctx.trace_id, "032x"), format(ctx.span_id, "016x"))
        span.end(end_time=end_i)
    assert provider.force_flush(10_000)
    provider.shutdown()

    http = http_session()
    wait_query(http, base, 'cer_journey_errors_total{journey="checkout"}', 2)

    def exemplars(metric: str) -> dict:
        """le (or "") -> set of (trace_id, span_id, value) Prometheus stored for the metric."""
        now = time.time()
        r = http.get(f"{base}/api/v1/query_exemplars",
                     params={"query": metric, "start": now - 600, "end": now + 60}, timeout=5)
        r.raise_for_status()
        body = r.json()
        assert body["status"] == "success", body
        out = {}
        for series in body["data"]:
            le = series["seriesLabels"].get("le", "")
            for e in series["exemplars"]:
                out.setdefault(le, set()).add((e["labels"]["trace_id"], e["labels"]["span_id"], float(e["value"])))
        return out

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        errors = exemplars('cer_journey_errors_total{journey="checkout"}')
        buckets = exemplars('cer_journey_duration_seconds_bucket{journey="checkout"}')
        slow = exemplars('cer_journey_slow_total{journey="checkout"}')
        if errors and slow and len(buckets) == 3:
            break
        time.sleep(0.5)
    # The counters carry their newest bad request, counting 1: "both" is the newest
    # failure (the 60 ms one ended 2 ms before it) and the newest slow request.
    assert errors == {"": {(*ids["both"], 1.0)}}
    assert slow == {"": {(*ids["both"], 1.0)}}
    # Each bucket's slowest request, its value the duration in seconds.
    assert buckets == {
        "0.1": {(*ids["good80"], 0.08)},
        "0.5": {(*ids["slow"], 0.4)},
        "+Inf": {(*ids["both"], 0.7)},
    }
    # Still one sample per series: OpenMetrics did not change the values.
    assert query(http, base, 'cer_journey_duration_seconds_bucket{journey="checkout",le="0.1"}') == 3
    assert query(http, base, 'cer_journey_requests_total{journey="checkout"}') == 5
