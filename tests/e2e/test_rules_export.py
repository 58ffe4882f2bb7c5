"""`cerflow export prometheus-rules`: promtool accepts the output, and a real Prometheus
loading it fires exactly the alerts cerflow raises itself (cer_slo_alert_active) for the
same spans: the objectives per journey, the windows, the thresholds and min_events agree."""

from __future__ import annotations

import subprocess
import threading
import time

from conftest import REPO, http_session, which_or_fail
from test_prometheus import prometheus  # noqa: F401  (a fixture)
from test_python_sdk import ERROR, SERVER, json_request, json_span, post_json

# Short windows so a test sees the alerts within seconds. checkout's objective of 0.9
# allows 10% failures; 1 in 4 failing is a burn rate of 2.5: above the page threshold
# (2, over 30s and 10s) and the ticket one (1, over 1m and 20s). login fails every
# request (burn 1000 against 0.999) but gets one request per 3s: about 10 in 30s and 20 in
# 1m, under min_events (30), so neither cerflow nor Prometheus may alert on it. No span
# is slow and no journey has a correctness rule: no latency or correctness alert.
CONFIG = """\
slo:
  min_events: 30
  clear_after: 1m
  burn_windows: [10s, 20s, 30s, 1m]
  alerts:
    - { severity: page, long_window: 30s, short_window: 10s, burn_rate: 2 }
    - { severity: ticket, long_window: 1m, short_window: 20s, burn_rate: 1 }
journeys:
  - name: checkout
    objectives: { availability: 0.9 }
    latency_threshold: 1s
    match: { span_name: POST /checkout }
  - name: login
    latency_threshold: 1s
    match: { span_name: POST /login }
"""

WANT = {("checkout", "availability", "page"), ("checkout", "availability", "ticket")}


def export_rules(cerflow_bin, config_path) -> str:
    out = subprocess.run(
        [str(cerflow_bin), "export", "prometheus-rules", "--config", str(config_path)],
        capture_output=True, text=True, timeout=30,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def promtool_check(path) -> None:
    promtool = which_or_fail("promtool", "/usr/bin/promtool")
    check = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr


def test_example_rules_pass_promtool():
    # That they are the output for examples/shop.yaml is a Rust unit test (src/rules.rs).
    promtool_check(REPO / "examples" / "prometheus-rules.yaml")


def send_traffic(cf, stop: threading.Event) -> None:
    tick = 0
    while not stop.is_set():
        now = time.time_ns()
        spans = [json_span("POST /checkout", SERVER, now - 50_000_000, now, {}, ERROR if i == 0 else 0) for i in range(4)]
        if tick % 6 == 0:
            spans.append(json_span("POST /login", SERVER, now - 50_000_000, now, {}, ERROR))
        r = post_json(cf, json_request(spans, {"service.name": "shop"}), gzipped=False)
        assert r.status_code == 200, r.text
        tick += 1
        stop.wait(0.5)


def cerflow_alerts(cf) -> set:
    m = cf.metrics()
    active = set()
    for labels, v in m.series("cer_slo_alert_active").items():
        d = dict(labels)
        if v == 1 and set(d) == {"journey", "sli", "severity"}:
            active.add((d["journey"], d["sli"], d["severity"]))
    return active


def prometheus_alerts(http, base) -> set:
    alerts = http.get(f"{base}/api/v1/alerts", timeout=5).json()["data"]["alerts"]
    return {
        (a["labels"]["journey"], a["labels"]["sli"], a["labels"]["severity"])
        for a in alerts
        if a["state"] == "firing" and a["labels"]["alertname"] == "CerJourneyErrorBudgetBurn"
    }


def test_generated_rules_fire_like_cerflow(start_cerflow, prometheus, tmp_path, cerflow_bin):  # noqa: F811
    cf = start_cerflow(CONFIG)
    rules = tmp_path / "rules.yaml"
    rules.write_text(export_rules(cerflow_bin, cf.config_path))
    promtool_check(rules)
    base = prometheus(cf.prom_port, str(rules))
    http = http_session()
    stop = threading.Event()
    sender = threading.Thread(target=send_traffic, args=(cf, stop), daemon=True)
    sender.start()
    try:
        deadline = time.monotonic() + 60
        seen_cf, seen_prom = set(), set()
        while time.monotonic() < deadline:
            seen_cf, seen_prom = cerflow_alerts(cf), prometheus_alerts(http, base)
            if seen_cf == WANT and seen_prom == WANT:
                break
            time.sleep(0.5)
        assert (seen_cf, seen_prom) == (WANT, WANT)
        # Ten more seconds of the same traffic: login stays under min_events in both.
        time.sleep(10)
        assert (cerflow_alerts(cf), prometheus_alerts(http, base)) == (WANT, WANT)
    finally:
        stop.set()
        sender.join(timeout=10)
