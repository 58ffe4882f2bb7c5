"""A real browser: Debian's Chromium, driven by playwright-core (tests/e2e/browser/
drive.mjs), opens a test page that bundles the OpenTelemetry web SDK (trace and logs
OTLP/HTTP exporters) and the web-vitals library (esbuild, tests/e2e/browser/build.mjs),
served from another loopback origin than cerflow's. The page loads, is clicked and
navigated away from; its spans, web vitals and frustration event reach cerflow through
CORS with a public token and show under the page's journey. The same page on a second
origin, not in `allowed_origins`, is refused and counted."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from conftest import free_ports, key, which_or_fail

BROWSER_DIR = Path(__file__).resolve().parent / "browser"
# The e2e tests' one npm folder (tests/e2e/package.json); node and esbuild resolve from
# the parent.
NODE_MODULES = Path(__file__).resolve().parent / "node_modules"
CHROMIUM = "/usr/bin/chromium"
TOKEN = "web-7f3a"


@pytest.fixture(scope="module")
def bundle() -> str:
    node = which_or_fail("node")
    if not (NODE_MODULES / "playwright-core").is_dir():
        pytest.fail(f"the browser test's packages are missing: run `npm ci` in {NODE_MODULES.parent} (scripts/test.sh does)", pytrace=False)
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} is missing (scripts/test.sh installs Debian's chromium)", pytrace=False)
    p = subprocess.run([node, "build.mjs"], cwd=BROWSER_DIR, stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, f"esbuild failed:\n{p.stdout}\n{p.stderr}"
    return node


def test_a_page_in_chromium_sends_spans_vitals_and_frustrations_through_cors(start_cerflow, bundle):
    page_port, other_port = free_ports(2)
    page_origin = f"http://127.0.0.1:{page_port}"
    cf = start_cerflow(
        "journeys:\n"
        "  - name: shop-page\n"
        "    match: { service: shop-web }\n"
        "    experience:\n"
        "      web_vitals: { lcp: 2.5s, inp: 200ms, cls: 0.1, fcp: 1.8s, ttfb: 800ms }\n"
        "      frustration_events: [app.dead_click]\n",
        http=f"        cors:\n          allowed_origins: [\"{page_origin}\"]\n          allowed_headers: [Authorization]\n",
        receivers=("    auth:\n      bearer_tokens:\n"
                   f"        - {{ token: {TOKEN}, tenant: web, public: true, allowed_origins: [\"{page_origin}\"] }}\n"),
    )
    p = subprocess.run(
        [bundle, "drive.mjs", f"http://127.0.0.1:{cf.http_port}", TOKEN, str(page_port), str(other_port)],
        cwd=BROWSER_DIR, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=180,
    )
    assert p.returncode == 0, f"drive.mjs failed ({p.returncode}):\n{p.stdout}\n{p.stderr}"
    seen = json.loads(p.stdout.strip().splitlines()[-1])
    assert seen["console"] == [], seen
    # The page saw its vitals reported (fcp, ttfb and lcp at least) and every export
    # from the allowed origin answered 200; every one from the other origin failed.
    assert seen["vitals"] >= 3, seen
    assert seen["allowed"]["failed"] == 0 and seen["allowed"]["ok"] >= 4, seen
    assert seen["other"]["ok"] == 0 and seen["other"]["failed"] >= 1, seen

    j = {"journey": "shop-page", "window": "1m"}
    # Two spans from the allowed page: its load and its click; the other page's were refused.
    m = cf.wait_for({
        key("cer_journey_requests_total", journey="shop-page"): 2.0,
        key("cer_journey_frustrations_total", journey="shop-page", event="app.dead_click"): 1.0,
    })
    # fcp, ttfb and lcp are reported while the page is open (web-vitals reportAllChanges);
    # values depend on the machine, so only their presence and range are checked.
    # (`name` is a label here, so the samples are read by hand.)
    p75 = {
        labels["name"]: v
        for labels, v in ((dict(lbl), v) for lbl, v in m.series("cer_journey_web_vital").items())
        if labels["journey"] == "shop-page" and labels["window"] == "1m" and labels["quantile"] == "0.75"
    }
    for name in ("fcp", "ttfb", "lcp"):
        assert name in p75 and 0 <= p75[name] < 60, (name, p75)
    ratio = m.get("cer_sli_experience_ratio", **j)
    assert ratio is not None and 0 <= ratio <= 1, ratio
    # The clicking user (one session) had a frustration: an affected user.
    assert m.get("cer_journey_users", **j) == 1.0
    assert m.get("cer_journey_users_affected", **j) == 1.0
    # Each export of the page on the other origin was refused at its preflight.
    refused = m.get("cerflow_refused_requests_total", reason="cors")
    assert refused == seen["other"]["failed"], (refused, seen)
    assert m.get("cerflow_refused_requests_total", reason="unauthenticated") == 0.0
