"""`cerflow loadgen`'s defaults are a healthy service: a game day against the config
`cerflow loadgen --print-config` prints, with the default objectives, starts green and
only its fault phase turns red."""

from __future__ import annotations

import subprocess
import time

import pytest

from conftest import key

# Healthy (the loadgen's defaults), then checkout in eu-west-1 fails half the time.
SCENARIO = """\
phases:
  - name: healthy
    duration: 5s
  - name: checkout-eu-west-1-failing
    duration: 3s
    faults:
      - journey: checkout
        region: eu-west-1
        error_rate: 0.5
"""

JOURNEYS = ("checkout", "cart", "login")
SLIS = ("availability", "latency", "correctness")
# The loadgen's six default cohorts: six regions, all on the free tier.
REGIONS = ("us-east-1", "eu-west-1", "ap-southeast-1", "us-west-2", "eu-central-1", "sa-east-1")


def printed_config(cerflow_bin) -> str:
    out = subprocess.run(
        [str(cerflow_bin), "loadgen", "--print-config"], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    # The e2e base config names its own version.
    return "".join(line + "\n" for line in out.splitlines() if not line.startswith("version:"))


def alerts(m) -> dict:
    """{frozenset(labels): value} of every cer_slo_alert_active series."""
    return m.series("cer_slo_alert_active")


def test_defaults_are_green_and_only_the_fault_phase_turns_red(start_cerflow, cerflow_bin, tmp_path):
    cf = start_cerflow(printed_config(cerflow_bin))
    path = tmp_path / "scenario.yaml"
    path.write_text(SCENARIO)
    log = open(tmp_path / "loadgen.log", "wb")
    lg = subprocess.Popen(
        [str(cerflow_bin), "loadgen", "--endpoint", f"127.0.0.1:{cf.grpc_port}", "--rate", "3000",
         "--scenario", str(path), "--quiet"],
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        # Healthy phase (5 s from the loadgen's first request): watched for 3 s from the
        # first spans cerflow shows, which leaves 2 s for the hand-over to lag. Nothing
        # may fail, alert or burn budget faster than 1 (the lowest alert threshold), and
        # by the end every journey x cohort series has more than slo.min_events (10).
        series = {(j, r) for j in JOURNEYS for r in REGIONS}
        green_seen = None
        t0 = None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            m = cf.metrics()
            requests = m.series("cer_journey_requests_total")
            if t0 is None:
                if not requests:
                    time.sleep(0.05)
                    continue
                t0 = time.monotonic()
            if time.monotonic() > t0 + 3:
                break
            failed = {lbl: v for lbl, v in m.series("cer_journey_errors_total").items() if v}
            assert not failed, f"spans failed in the healthy phase: {failed}"
            active = {lbl: v for lbl, v in alerts(m).items() if v != 0}
            assert not active, f"an alert fired in the healthy phase: {active}\n{m.text}"
            burning = {lbl: v for lbl, v in m.series("cer_slo_burn_rate").items() if v >= 1}
            assert not burning, f"budget burning in the healthy phase: {burning}"
            counts = {(dict(lbl)["journey"], dict(lbl)["cloud_region"]): v for lbl, v in requests.items()}
            if set(counts) == series and min(counts.values()) > 10:
                green_seen = m
            time.sleep(0.1)
        assert green_seen is not None, "the healthy phase never showed every series with > 10 events"
        # Every journey has its alert series, all at 0.
        assert {(dict(lbl)["journey"], dict(lbl)["sli"]) for lbl in alerts(green_seen)} >= {
            (j, s) for j in JOURNEYS for s in SLIS
        }
        assert lg.wait(timeout=30) == 0, (tmp_path / "loadgen.log").read_text()
    finally:
        if lg.poll() is None:
            lg.kill()
            lg.wait()
        log.close()

    # Fault phase: checkout's availability in eu-west-1 pages and tickets, for the cohort
    # and for the journey as a whole. In the cohort half the fault phase's spans failed:
    # with 5 s healthy and 3 s faulty, 3/8 x 0.5 = 19% of its events, a burn rate of
    # about 190 over every window (all of them hold the whole run). The journey as a whole
    # is one sixth of that, about 31: still above 14.4, the highest threshold. Nothing
    # else fails, so nothing else alerts.
    red = {
        frozenset({("journey", "checkout"), ("sli", "availability"), ("severity", sev), *cohort})
        for sev in ("page", "ticket")
        for cohort in ((), (("cloud_region", "eu-west-1"), ("app_plan_tier", "free")))
    }
    deadline = time.monotonic() + 10
    while True:
        m = cf.metrics()
        active = {lbl for lbl, v in alerts(m).items() if v == 1}
        if active == red or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert active == red, f"active alerts {active}, expected {red}\n{m.text}"
    assert all(v in (0, 1) for v in alerts(m).values())
    # Errors only where the fault was: checkout in eu-west-1.
    errors = {lbl for lbl, v in m.series("cer_journey_errors_total").items() if v > 0}
    assert errors == {frozenset({("journey", "checkout"), ("cloud_region", "eu-west-1"), ("app_plan_tier", "free")})}
    assert m.get("cer_slo_alert_active", journey="cart", sli="availability", severity="page") == 0
    assert key("cer_slo_alert_active", journey="checkout", sli="latency", severity="page") in m.samples
