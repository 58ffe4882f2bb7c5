"""docker/compose.yaml, checked without a Docker engine (none here, nor the compose plugin):
against the Compose Specification's JSON schema (from the compose-go module, fetched by
scripts/compose-schema.sh), and structurally: every bind-mounted file exists, the Collector
forwards traces to cerflow, Prometheus scrapes cerflow and its config and rules pass
promtool, Grafana is provisioned with the datasource and the dashboards, cerflow's config
is valid, and loadgen runs only under its profile."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml

from conftest import REPO, which_or_fail

DOCKER = REPO / "docker"
COMPOSE = DOCKER / "compose.yaml"


def schema_path() -> Path:
    env = os.environ.get("COMPOSE_SCHEMA")
    if env:
        return Path(env)
    version = re.search(r"^VERSION=(\S+)", (REPO / "scripts/compose-schema.sh").read_text(), re.M).group(1)
    path = REPO / ".cache" / "compose-spec" / version / "compose-spec.json"
    if not path.is_file():
        pytest.fail(f"{path} is missing: run `bash scripts/compose-schema.sh` (scripts/test.sh does)", pytrace=False)
    return path


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load(COMPOSE.read_text())


def mounts(service: dict) -> dict:
    """{container path: repository path} of a service's bind mounts."""
    out = {}
    for v in service.get("volumes", []):
        src, dst = v.split(":")[:2]
        if src.startswith("."):
            out[dst] = (DOCKER / src).resolve()
    return out


def test_compose_file_matches_the_compose_spec_schema(compose):
    schema = json.loads(schema_path().read_text())
    jsonschema.Draft7Validator(schema).validate(compose)
    # The validator does judge: an unknown service key is refused.
    broken = json.loads(json.dumps(compose))
    broken["services"]["cerflow"]["bogus"] = 1
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(schema).validate(broken)


def test_services_fit_together(compose, cerflow_bin, tmp_path):
    services = compose["services"]
    assert set(services) == {"cerflow", "otelcol", "prometheus", "grafana", "loadgen"}
    for name, s in services.items():
        image = s.get("image", "")
        assert ":" in image and not image.endswith(":latest"), f"{name}: pin the image ({image!r})"
        for dep in s.get("depends_on", []):
            assert dep in services, (name, dep)
        for dst, src in mounts(s).items():
            assert src.exists(), f"{name}: {src} (mounted at {dst}) does not exist"
    assert services["otelcol"]["image"].startswith("otel/opentelemetry-collector-contrib:")
    assert services["loadgen"]["profiles"] == ["loadgen"]
    assert all("profiles" not in s for n, s in services.items() if n != "loadgen")
    published = [p.split(":")[0] for s in services.values() for p in s.get("ports", [])]
    assert len(published) == len(set(published)), published
    assert set(compose["volumes"]) == {v.split(":")[0] for s in services.values() for v in s.get("volumes", []) if not v.startswith(".")}

    # cerflow: its config is valid and listens where the others look for it.
    cf_mounts = mounts(services["cerflow"])
    cf_config = cf_mounts["/etc/cerflow/cerflow.yaml"]
    assert services["cerflow"]["command"] == ["--config", "/etc/cerflow/cerflow.yaml"]
    check = subprocess.run([str(cerflow_bin), "validate", "--config", str(cf_config)], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stderr
    cfg = yaml.safe_load(cf_config.read_text())
    assert cfg["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"] == "0.0.0.0:4317"
    assert cfg["exporters"]["prometheus"]["endpoint"] == "0.0.0.0:9464"
    assert cfg["slo"]["checkpoint"]["path"].startswith("/var/lib/cerflow/")
    assert "cerflow-data:/var/lib/cerflow" in services["cerflow"]["volumes"]

    # The Collector: OTLP in, traces to cerflow's gRPC port, every component it names defined.
    col = yaml.safe_load(mounts(services["otelcol"])["/etc/otelcol-contrib/config.yaml"].read_text())
    pipeline = col["service"]["pipelines"]["traces"]
    for kind in ("receivers", "processors", "exporters"):
        assert set(pipeline.get(kind, [])) <= set(col.get(kind, {})), kind
    assert [col["exporters"][e]["endpoint"] for e in pipeline["exporters"]] == ["cerflow:4317"]
    assert services["loadgen"]["command"][:3] == ["loadgen", "--endpoint", "otelcol:4317"]

    # Prometheus: scrapes cerflow; the config and every rule file pass promtool.
    prom_mounts = mounts(services["prometheus"])
    prom_cfg = yaml.safe_load(prom_mounts["/etc/prometheus/prometheus.yml"].read_text())
    assert [t for sc in prom_cfg["scrape_configs"] for c in sc["static_configs"] for t in c["targets"]] == ["cerflow:9464"]
    promtool = which_or_fail("promtool", "/usr/bin/promtool")
    local = dict(prom_cfg, rule_files=[str(prom_mounts[r]) for r in prom_cfg["rule_files"]])
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(local))
    check = subprocess.run([promtool, "check", "config", str(tmp_path / "prometheus.yml")], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"SUCCESS: {len(prom_cfg['rule_files'])} rule files found" in check.stdout, check.stdout

    # Grafana: the Prometheus datasource and a file provider over the mounted dashboards.
    graf = mounts(services["grafana"])
    prov = graf["/etc/grafana/provisioning"]
    ds = yaml.safe_load((prov / "datasources/prometheus.yaml").read_text())["datasources"]
    assert [(d["type"], d["url"]) for d in ds] == [("prometheus", "http://prometheus:9090")]
    providers = yaml.safe_load((prov / "dashboards/cerflow.yaml").read_text())["providers"]
    path = providers[0]["options"]["path"]
    assert graf[path] == REPO / "dashboards"
    home = services["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (REPO / "dashboards" / Path(home).relative_to(path)).is_file()
