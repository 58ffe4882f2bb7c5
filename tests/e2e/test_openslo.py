"""`cerflow export openslo`: the OpenSLO project's own validator (`oslo validate`, built by
scripts/oslo.sh from the version pinned in tests/openslo/go.mod) accepts the documents
for examples/shop.yaml; the references between them resolve (oslo does not check those);
and the targets, window and composite weights are the config's."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import REPO


def oslo_binary() -> str:
    env = os.environ.get("OSLO_BIN")
    if env:
        return env
    version = re.search(r"github\.com/OpenSLO/oslo (v\S+)", (REPO / "tests/openslo/go.mod").read_text()).group(1)
    path = REPO / ".cache" / "oslo" / version / "oslo"
    if not path.is_file():
        pytest.fail(f"{path} is missing: run `bash scripts/oslo.sh` (scripts/test.sh does)", pytrace=False)
    return str(path)


def export(cerflow_bin, config: Path) -> str:
    out = subprocess.run(
        [str(cerflow_bin), "export", "openslo", "--config", str(config)],
        capture_output=True, text=True, timeout=30,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def oslo_validate(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([oslo_binary(), "validate", "-f", str(path)], capture_output=True, text=True, timeout=60)


def test_oslo_validates_the_export(cerflow_bin, tmp_path):
    text = export(cerflow_bin, REPO / "examples" / "shop.yaml")
    good = tmp_path / "shop-openslo.yaml"
    good.write_text(text)
    check = oslo_validate(good)
    assert check.returncode == 0 and "Valid!" in check.stdout + check.stderr, check.stdout + check.stderr
    # The validator does judge the fields: a target of 1.5 is refused.
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("target: 0.9995", "target: 1.5", 1))
    check = oslo_validate(bad)
    assert check.returncode != 0 and "should be less than '1'" in check.stdout + check.stderr, check.stdout + check.stderr


def test_documents_carry_the_config(cerflow_bin):
    docs = list(yaml.safe_load_all(export(cerflow_bin, REPO / "examples" / "shop.yaml")))
    assert all(d["apiVersion"] == "openslo/v1" for d in docs)
    by_kind: dict = {}
    for d in docs:
        names = by_kind.setdefault(d["kind"], [])
        assert d["metadata"]["name"] not in names, d["metadata"]
        names.append(d["metadata"]["name"])
    assert by_kind["Service"] == ["checkout", "login", "search", "customer-experience"]
    # checkout has a correctness rule; login and search do not.
    slis = ["checkout-availability", "checkout-latency", "checkout-correctness",
            "login-availability", "login-latency", "search-availability", "search-latency"]
    assert by_kind["SLI"] == slis
    assert by_kind["SLO"] == slis + ["customer-experience"]
    sli = next(d for d in docs if d["kind"] == "SLI" and d["metadata"]["name"] == "checkout-latency")
    assert sli["spec"]["ratioMetric"] == {
        "counter": True,
        "bad": {"metricSource": {"type": "Prometheus", "spec": {"query": 'sum(cer_journey_slow_total{journey="checkout"})'}}},
        "total": {"metricSource": {"type": "Prometheus", "spec": {"query": 'sum(cer_journey_requests_total{journey="checkout"})'}}},
    }
    slos = {d["metadata"]["name"]: d["spec"] for d in docs if d["kind"] == "SLO"}
    for name, spec in slos.items():
        assert spec["timeWindow"] == [{"duration": "30d", "isRolling": True}], name
        assert spec["budgetingMethod"] == "Occurrences", name
        assert spec["service"] in by_kind["Service"], name
        refs = [spec.get("indicatorRef")] if "indicatorRef" in spec else [o["indicatorRef"] for o in spec["objectives"]]
        assert all(r in by_kind["SLI"] for r in refs), name
    # shop.yaml: checkout's availability objective is 0.9995, the rest the defaults.
    targets = {n: s["objectives"][0]["target"] for n, s in slos.items() if n != "customer-experience"}
    assert targets == {
        "checkout-availability": 0.9995, "checkout-latency": 0.99, "checkout-correctness": 0.999,
        "login-availability": 0.999, "login-latency": 0.99, "search-availability": 0.999, "search-latency": 0.99,
    }
    # Weights 5, 3, 1 split by the SLI weights 0.5/0.3/0.2 over the SLIs each journey has:
    # checkout 5 x (0.5, 0.3, 0.2); login 3 x (0.5, 0.3) / 0.8; search 1 x (0.5, 0.3) / 0.8.
    composite = [(o["indicatorRef"], o["compositeWeight"], o["target"]) for o in slos["customer-experience"]["objectives"]]
    assert composite == [
        ("checkout-availability", 2.5, 0.9995), ("checkout-latency", 1.5, 0.99), ("checkout-correctness", 1, 0.999),
        ("login-availability", 1.875, 0.999), ("login-latency", 1.125, 0.99),
        ("search-availability", 0.625, 0.999), ("search-latency", 0.375, 0.99),
    ]
