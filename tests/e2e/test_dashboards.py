"""dashboards/*.json: each Grafana dashboard is well formed (unique ids, a Prometheus
datasource variable every panel and query uses, variables defined before use, only metric
names the README's Metrics tables list), and every panel query, with its variables filled
in, parses and returns data from a real Prometheus scraping cerflow under `cerflow loadgen`
traffic. The traffic calls two dependencies and a scenario fault fails some calls to
payments, so the dependency and blame panels have data; its 5% errors page, so the
incident panels do; its second phase sends a new service.version, a deployment of every
journey that a small deployments.min_events judges within seconds, so the deployment
panels do."""

from __future__ import annotations

import json
import re
import subprocess
import time

import pytest

from conftest import REPO, http_session
from test_prometheus import prometheus  # noqa: F401  (a fixture)

DASHBOARDS = sorted((REPO / "dashboards").glob("*.json"))
VAR_REF = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")
# Grafana's own interval variables, as Grafana fills them for a 1s scrape interval.
BUILTIN = {"__rate_interval": "1m", "__interval": "15s", "__range": "5m"}


def load(path):
    return json.loads(path.read_text())


def all_panels(dash):
    for p in dash["panels"]:
        yield p
        yield from p.get("panels", [])  # panels inside collapsed rows


def readme_metrics() -> set:
    """Every metric name in the README's Metrics tables (first column, in backticks)."""
    text = (REPO / "README.md").read_text()
    section = text.split("\n## Metrics\n", 1)[1].split("\n## ", 1)[0]
    names = set(re.findall(r"^\| `([a-z_:]+)` \|", section, re.M))
    # Histogram series carry their suffixes; the README lists a histogram once.
    for h in re.findall(r"^\| `([a-z_:]+)` \| histogram \|", section, re.M):
        names |= {f"{h}_{s}" for s in ("bucket", "sum", "count")}
    return names


def test_there_are_three_dashboards():
    assert [p.name for p in DASHBOARDS] == ["cerflow-executive.json", "cerflow-oncall.json", "cerflow-self.json"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_dashboard_is_well_formed(path):
    dash = load(path)
    assert dash["uid"] == path.stem and dash["title"] and isinstance(dash["schemaVersion"], int)
    variables = dash["templating"]["list"]
    names = [v["name"] for v in variables]
    assert len(names) == len(set(names)), names
    ds = variables[0]
    assert (ds["name"], ds["type"], ds["query"]) == ("datasource", "datasource", "prometheus")
    ds_ref = {"type": "prometheus", "uid": "${datasource}"}
    for v in variables[1:]:
        assert v["datasource"] == ds_ref, v["name"]
        # A variable's query may use only the variables before it.
        used = {a or b for a, b in VAR_REF.findall(v["definition"])}
        assert used <= set(names[: names.index(v["name"])]), (v["name"], used)
    panels = list(all_panels(dash))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), ids
    known = readme_metrics()
    for p in panels:
        g = p["gridPos"]
        assert all(isinstance(g[k], int) for k in "xywh") and g["x"] + g["w"] <= 24, p["title"]
        assert p["datasource"] == ds_ref, p["title"]
        assert p["targets"], p["title"]
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs)), p["title"]
        for t in p["targets"]:
            assert t["datasource"] == ds_ref, p["title"]
            used = {a or b for a, b in VAR_REF.findall(t["expr"])}
            assert used <= set(names) | set(BUILTIN), (p["title"], used - set(names))
            metrics = set(re.findall(r"\b(cerflow_[a-z_]+|cer_[a-z_]+)\b", t["expr"]))
            assert metrics and metrics <= known, (p["title"], metrics - known)


def fill(expr: str, values: dict) -> str:
    return VAR_REF.sub(lambda m: values[m.group(1) or m.group(2)], expr)


def label_values(http, base, definition: str, values: dict) -> list:
    m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", fill(definition, values))
    assert m, definition
    r = http.get(f"{base}/api/v1/label/{m.group(2)}/values", params={"match[]": m.group(1)}, timeout=5)
    r.raise_for_status()
    return r.json()["data"]


def run(http, base, expr: str):
    r = http.get(f"{base}/api/v1/query", params={"query": expr}, timeout=5)
    body = r.json()
    assert r.status_code == 200 and body["status"] == "success", (expr, body)
    return body["data"]["result"]


# Two minutes in which a tenth of the calls to payments fail, and fail their request.
# After 10 s (1.42.0 is then every journey's current version) 1.43.0 replaces it: a
# deployment of each journey.
SCENARIO = """\
phases:
  - name: payments-flaky
    duration: 10s
    faults:
      - dependency: payments
        error_rate: 0.1
  - name: rollout
    duration: 110s
    version: 1.43.0
    faults:
      - dependency: payments
        error_rate: 0.1
"""


@pytest.fixture
def loadgen(cerflow_bin, tmp_path):
    """Starts `cerflow loadgen` against a gRPC endpoint for two minutes, each request
    calling payments and inventory; stops it at the end."""
    procs = []

    def start(endpoint: str):
        log = open(tmp_path / "loadgen.log", "wb")
        (tmp_path / "scenario.yaml").write_text(SCENARIO)
        proc = subprocess.Popen(
            [str(cerflow_bin), "loadgen", "--endpoint", endpoint, "--rate", "2000",
             "--journeys", "3", "--cohorts", "6", "--error-rate", "0.05", "--spans-per-request", "200",
             # A pool body keeps its trace ids: at 10 requests a second, 32 bodies come
             # round every 3.2 s, after traces.wait (1 s) has completed their traces.
             "--dependencies", "2", "--pool", "32", "--scenario", str(tmp_path / "scenario.yaml"), "--quiet"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        )
        procs.append((proc, log))

    yield start
    for proc, log in procs:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        log.close()


def test_every_panel_query_returns_data(start_cerflow, prometheus, loadgen, cerflow_bin):  # noqa: F811
    printed = subprocess.run([str(cerflow_bin), "loadgen", "--print-config", "--journeys", "3", "--cohorts", "6"],
                             capture_output=True, text=True, timeout=30, check=True).stdout
    # The generated journeys and cohorts; the base config brings listeners and its version.
    body = "".join(line for line in printed.splitlines(keepends=True) if not line.startswith("version:"))
    body += "slo:\n  alerts:\n    - { severity: page, long_window: 1m, short_window: 10s, burn_rate: 2 }\n"
    # The customer panels need users and values, which the loadgen does not name: its
    # hosts stand in for users, and every generated journey is worth 1 EUR a request.
    body += "users:\n  keys: [host.name]\n"
    # Blame follows a trace's completion; a short wait gives it within seconds.
    body += "traces:\n  wait: 1s\n"
    # About 220 requests a journey a second (10 bodies a second of 200 / 3 = 66 requests,
    # over 3 journeys): 50 of the new version are there within a second of the rollout.
    body += "deployments:\n  min_events: 50\n"
    body = re.sub(r"^(  - name: .+\n)", r"\1    value: { per_request: 1, currency: EUR }\n", body, flags=re.M)
    cf = start_cerflow(body)
    base = prometheus(cf.prom_port)
    loadgen(f"127.0.0.1:{cf.grpc_port}")
    http = http_session()
    # Rates need two scrapes with traffic between them; the cohort scores need the spans.
    deadline = time.monotonic() + 60
    # The blame rate needs two scrapes with blamed failures; time to detect an incident;
    # each of the 3 journeys' deployment judged and scraped twice, so its increase has data.
    ready = ("rate(cerflow_processed_spans_total[1m]) > 0", "cer_cohort_score",
             'rate(cer_journey_failures_attributed_total{dependency="payments"}[1m]) > 0',
             "cer_journey_time_to_detect_seconds_count > 0",
             "count(count_over_time(cer_deployments_total[1m]) >= 2) >= 3")
    while not all(run(http, base, q) for q in ready):
        assert time.monotonic() < deadline, \
            "no traffic, blame, incident or judged deployment reached Prometheus within 60s"
        time.sleep(0.5)
    problems = []
    for path in DASHBOARDS:
        dash = load(path)
        variables = dash["templating"]["list"][1:]
        # Each variable once at its first value, then those that offer "All" at it.
        for mode in ("first", "all"):
            values = dict(BUILTIN)
            for v in variables:
                if mode == "all" and v.get("includeAll"):
                    values[v["name"]] = v["allValue"]
                    continue
                options = label_values(http, base, v["definition"], values)
                assert options, f"{path.name}: variable {v['name']} has no values"
                values[v["name"]] = options[0]
            for p in all_panels(dash):
                for t in p["targets"]:
                    expr = fill(t["expr"], values)
                    if not run(http, base, expr):
                        problems.append(f"{path.name} / {p['title']} ({mode}): no data for {expr}")
    assert not problems, "\n".join(problems)
