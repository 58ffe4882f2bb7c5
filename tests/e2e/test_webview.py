"""The live web view in a real browser: Debian's Chromium driven by playwright-core
(tests/e2e/node/webview.mjs) while `cerflow loadgen --dependencies 2` plays a healthy
phase, a fault phase (in eu-west-1, checkout's calls to payments fail half the time, and
so do the checkouts that made them) and a healthy phase again.

The alert table is shortened so the fault pages within seconds and clears within
seconds of its end: one page rule over 10 s and 2 s at burn rate 14.4, cleared after
1 s. The loadgen spreads checkout over six regions: half of one sixth fails, about 8%
of its requests, a burn rate of about 80 against the 0.1% budget, over both windows.
Each request calls payments and inventory (the loadgen's first two dependencies);
`traces.wait` is 1 s so blame follows the fault within seconds, and the loadgen sends
no other errors, so every failure is blamed on payments.
Screenshots go to target/webview-screenshots/."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading

from conftest import REPO, which_or_fail
from test_loadgen import printed_config

SCENARIO = """\
phases:
  - name: healthy
    duration: 3s
  - name: checkout-eu-west-1-payments-failing
    duration: 12s
    faults:
      - journey: checkout
        region: eu-west-1
        dependency: payments
        error_rate: 0.5
  - name: healthy-again
    duration: 60s
"""

SLO = """\
slo:
  alerts:
    - { severity: page, long_window: 10s, short_window: 2s, burn_rate: 14.4 }
  clear_after: 1s
traces:
  wait: 1s
"""

NODE_DIR = REPO / "tests" / "e2e" / "node"
SHOTS = REPO / "target" / "webview-screenshots"


def test_the_web_view_follows_a_fault_live_in_chromium(start_cerflow, cerflow_bin, tmp_path):
    chromium = which_or_fail("chromium", "/usr/bin/chromium")
    node = which_or_fail("node")
    # A 500 ms tick: at 100 ms a worker busy with the load on a crowded machine misses
    # ticks, and a tick without a worker's answer shows none of its series.
    cf = start_cerflow(printed_config(cerflow_bin) + SLO, interval="500ms")
    base = f"http://127.0.0.1:{cf.prom_port}"
    (tmp_path / "scenario.yaml").write_text(SCENARIO)
    browser = subprocess.Popen(
        [node, "webview.mjs", base, str(SHOTS)],
        cwd=NODE_DIR, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, env=dict(os.environ, CHROMIUM=chromium),
    )
    # The script has its own timeouts; this one stops a hung browser all the same.
    watchdog = threading.Timer(240, browser.kill)
    watchdog.start()
    loadgen = None
    steps, lines = {}, []
    try:
        for line in browser.stdout:
            lines.append(line.rstrip())
            if not line.startswith("STEP "):
                continue
            _, name, data = line.rstrip().split(" ", 2)
            steps[name] = json.loads(data)
            if name == "loaded":
                loadgen = subprocess.Popen(
                    [str(cerflow_bin), "loadgen", "--endpoint", f"127.0.0.1:{cf.grpc_port}", "--rate", "2000",
                     "--dependencies", "2", "--scenario", str(tmp_path / "scenario.yaml"), "--quiet"],
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                )
            if name == "pause-cerflow":
                os.kill(cf.proc.pid, signal.SIGSTOP)
            if name == "resume-cerflow":
                os.kill(cf.proc.pid, signal.SIGCONT)
            if name == "stop-cerflow":
                loadgen.kill()
                loadgen.wait()
                assert cf.stop() == 0, cf.log()
        code = browser.wait(timeout=60)
    finally:
        watchdog.cancel()
        if "resume-cerflow" not in steps and "pause-cerflow" in steps:
            os.kill(cf.proc.pid, signal.SIGCONT)
        for p in (browser, loadgen):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
    transcript = "\n".join(lines)
    assert code == 0 and "done" in steps, transcript

    # The degraded journey is the first row and fails; the healthy ones are OK.
    assert steps["failing-first"]["order"] == [["checkout", "failing"], ["cart", "ok"], ["login", "ok"]], transcript
    # The page alert opened an incident in the same evaluation: checkout's row says so.
    cells = steps["failing-first"]["incidentCells"]
    assert cells[0].startswith("Open since ") and cells[1:] == ["none", "none"], cells
    a11y = steps["accessible"]
    assert a11y["labelled"] and a11y["rowHeaders"] == 3, a11y
    # The journey page during the fault: failing, its failures blamed on payments only,
    # payments first among its dependencies (it has the failed calls), the incident open,
    # and no deployments (the loadgen sends none).
    jf = steps["journey-failing"]
    assert jf["status"] == "Failing", jf
    assert [d for d, _ in jf["blame"]] == ["payments"] and jf["blame"][0][1] > 0, jf
    assert [d for d, _ in jf["dependencies"]] == ["payments", "inventory"], jf
    assert jf["dependencies"][0][1] > 0 and jf["dependencies"][1][1] == 0, jf
    assert jf["incidents"] == ["true"] and jf["incidentHeaders"] == 8, jf
    assert jf["deployments"] == "No deployments seen for this journey.", jf
    assert jf["lowestContrast"][0][0] >= 4.5, jf
    # Every update arrived within one evaluation interval (500 ms) + 1 s.
    u = steps["updates"]
    assert u["interval_ms"] == 500 and len(u["gaps_ms"]) == 5 and max(u["gaps_ms"]) <= 1500, u
    # When the fault stopped, the page alert cleared without a reload; checkout stays
    # first, its budget spent by the fault.
    assert steps["recovered"]["order"] == [["checkout", "exhausted"], ["cart", "ok"], ["login", "ok"]], transcript
    # Filters: "car" matches cart only; cohort eu-west-1 lists each journey's cohort there.
    f = steps["filters"]
    assert f["named"] == ["cart"], f
    assert [j for j, _ in f["cohortRows"]] == ["checkout", "cart", "login"], f
    assert all("cloud_region=eu-west-1" in c for _, c in f["cohortRows"]), f
    # Keyboard: the first Tab reaches the skip link; Enter on a journey link opens it.
    assert steps["keyboard"]["skip"] == "Skip to the figures", steps["keyboard"]
    assert steps["keyboard"]["url"] == f"{base}/journey?name=checkout"
    # The journey page: both windows, the failing cohort first of six, four charts
    # (budget over the period, burn rates of availability and latency, score).
    j = steps["journey"]
    assert j["windows"] == ["1m", "5m"], j
    assert len(j["cohorts"]) == 6, j
    assert "cloud_region=eu-west-1" in j["cohorts"][0][0] and j["cohorts"][0][1] in ("failing", "exhausted"), j
    assert all(status == "ok" for _, status in j["cohorts"][1:]), j
    assert len(j["charts"]) == 4 and j["charts"][0].startswith("Error budget left over the SLO period"), j
    # After the fault: the blame stays in the windows, the incident has closed.
    assert j["blamed"] == ["payments"] and j["incidents"] == ["false"], j
    # Deployments, drawn from a journey document with two added (see webview.mjs 6b):
    # version, previous, result, then requests, availability, score new / previous and
    # the score drop (0.99 - 0.875 = 0.115).
    rows = steps["deployments"]["rows"]
    assert [r[:4] for r in rows] == [["1.43.0", "pending", "1.42.0", "Pending"],
                                     ["1.42.0", "regressed", "1.41.0", "Regressed"]], rows
    assert rows[0][5] == "–" and rows[1][6:10] == ["100 / 900", "90.00% / 99.90%", "87.50% / 99.00%", "11.50%"], rows
    assert rows[1][10] == "the previous version just before", rows
    assert steps["deployments"]["lowestContrast"][0][0] >= 4.5, steps["deployments"]
    # Text passes WCAG AA contrast (4.5:1) on both pages.
    assert steps["accessible"]["lowestContrast"][0][0] >= 4.5, steps["accessible"]
    assert j["lowestContrast"][0][0] >= 4.5, j
    # cerflow paused (SIGSTOP): the page says the data is stale, then goes live again.
    assert steps["resume-cerflow"]["conn"].startswith("Data is stale: no new evaluation for"), steps["resume-cerflow"]
    assert "live-again" in steps, transcript
    # cerflow stopped: the page says it is unreachable.
    assert "cerflow is unreachable" in steps["unreachable"]["conn"], steps["unreachable"]
    for name in ("overview-failing", "journey-failing", "overview-recovered", "journey", "journey-deployments", "overview-stale", "overview-unreachable"):
        assert (SHOTS / f"{name}.png").stat().st_size > 10_000, name
