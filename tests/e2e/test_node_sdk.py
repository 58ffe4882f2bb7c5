"""cerflow fed by the real OpenTelemetry Node SDK (tests/e2e/node/send.mjs): the OTLP
HTTP exporter, which sends JSON, and the gRPC exporter, each with and without gzip.
The spans are the shared scenario, so the expected figures are the same as for Python."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

import scenario
from conftest import which_or_fail

NODE_DIR = Path(__file__).resolve().parent / "node"
# The e2e tests' one npm folder (tests/e2e/package.json); node resolves from the parent.
NODE_MODULES = Path(__file__).resolve().parent / "node_modules"


@pytest.fixture(scope="module")
def node() -> str:
    exe = which_or_fail("node")
    if not (NODE_MODULES / "@opentelemetry" / "sdk-trace-base").is_dir():
        pytest.fail(f"Node dependencies are missing: run `npm ci` in {NODE_MODULES.parent} (scripts/test.sh does)", pytrace=False)
    return exe


def scenario_file(tmp_path: Path, batch: bool) -> Path:
    now = time.time_ns()
    spans = []
    for name, kind, dur_ms, attrs, status, events, ago_s in scenario.SPANS:
        end = now - ago_s * scenario.S
        start = end - dur_ms * scenario.MS
        spans.append({
            "name": name,
            "kind": kind,
            "start_ns": str(start),
            "end_ns": str(end),
            "attributes": attrs,
            "status": status,
            "events": events,
        })
    path = tmp_path / "spans.json"
    path.write_text(json.dumps({"resource": scenario.RESOURCE, "batch": batch, "spans": spans}))
    return path


def run_node(node: str, mode: str, endpoint: str, spans: Path) -> dict:
    p = subprocess.run(
        [node, str(NODE_DIR / "send.mjs"), mode, endpoint, str(spans)],
        cwd=NODE_DIR,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 0, f"node send.mjs {mode} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}"
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["exported"] == scenario.N_SPANS, out
    return out


@pytest.mark.parametrize(
    "mode,batch",
    [("http-json", False), ("http-json-gzip", True), ("grpc", True), ("grpc-gzip", False)],
)
def test_node_exporter(start_cerflow, node, tmp_path, mode, batch):
    cf = start_cerflow(scenario.CONFIG)
    endpoint = cf.grpc_endpoint if mode.startswith("grpc") else cf.http_traces_url
    run_node(node, mode, endpoint, scenario_file(tmp_path, batch))
    m = cf.wait_for(scenario.expected("grpc" if mode.startswith("grpc") else "http"))
    scenario.check_series_sets(m)
