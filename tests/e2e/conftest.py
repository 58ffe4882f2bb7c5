"""Fixtures for cerflow's end-to-end tests.

Every test starts its own cerflow process (the binary named by $CERFLOW_BIN, else
target/debug/cerflow) with a temporary YAML config on free 127.0.0.1 ports, waits for
/healthz, and stops it with SIGTERM at the end. Metrics are read back from /metrics
with a small parser of the Prometheus text format.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parents[2]

# Nothing the tests send may go through a proxy: every target is on 127.0.0.1.
for _var in ("no_proxy", "NO_PROXY"):
    _old = os.environ.get(_var, "")
    os.environ[_var] = ",".join(x for x in (_old, "127.0.0.1", "localhost") if x)
# Exporter settings from the environment would override what the tests pass.
for _var in list(os.environ):
    if _var.startswith("OTEL_"):
        del os.environ[_var]


def free_ports(n: int) -> list[int]:
    """n distinct free TCP ports on 127.0.0.1 (all sockets held until every port is picked)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def http_session() -> requests.Session:
    s = requests.Session()
    s.trust_env = False  # no proxy, no netrc
    return s


# --------------------------------------------------------------------------- metrics

_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\S+)?$")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(?:,|$)')


def _unescape(v: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n"}.get(m.group(1), m.group(1)), v)


def key(name: str, **labels: str) -> tuple:
    """The identity of one sample: its name and its exact label set."""
    return (name, frozenset(labels.items()))


def fmt_key(k: tuple) -> str:
    name, labels = k
    inner = ",".join(f'{a}="{b}"' for a, b in sorted(labels))
    return f"{name}{{{inner}}}"


@dataclass
class Metrics:
    samples: dict = field(default_factory=dict)
    types: dict = field(default_factory=dict)
    text: str = ""

    @classmethod
    def parse(cls, text: str) -> "Metrics":
        m = cls(text=text)
        for line in text.splitlines():
            if not line.strip():
                continue
            if line.startswith("# TYPE "):
                _, _, name, kind = line.split(None, 3)
                m.types[name] = kind
                continue
            if line.startswith("#"):
                continue
            match = _LINE.match(line)
            assert match, f"unparsable exposition line: {line!r}"
            name, raw_labels, value = match.groups()
            labels = {}
            if raw_labels:
                pos = 0
                while pos < len(raw_labels):
                    lm = _LABEL.match(raw_labels, pos)
                    assert lm, f"unparsable labels in {line!r}"
                    labels[lm.group(1)] = _unescape(lm.group(2))
                    pos = lm.end()
            k = (name, frozenset(labels.items()))
            assert k not in m.samples, f"duplicate sample {line!r}"
            m.samples[k] = float(value)
        return m

    def get(self, name: str, **labels: str):
        return self.samples.get(key(name, **labels))

    def series(self, name: str) -> dict:
        """{frozenset(labels): value} of every sample named `name`."""
        return {lbl: v for (n, lbl), v in self.samples.items() if n == name}

    def label_sets(self, name: str) -> set:
        return set(self.series(name))


def same(a, b) -> bool:
    if a is None or b is None:
        return a is b
    if isinstance(b, Approx):
        return b == a
    return a == b or (math.isnan(a) and math.isnan(b))


class Approx:
    """For the few values that are float sums: equal within 1e-9."""

    def __init__(self, v: float):
        self.v = v

    def __eq__(self, other):
        return other is not None and abs(other - self.v) <= 1e-9

    def __repr__(self):
        return f"~{self.v!r}"


# --------------------------------------------------------------------------- cerflow

def cerflow_binary() -> Path:
    env = os.environ.get("CERFLOW_BIN")
    path = Path(env) if env else REPO / "target" / "debug" / "cerflow"
    if not path.is_file() or not os.access(path, os.X_OK):
        pytest.fail(f"cerflow binary not found at {path}: run `cargo build` or set CERFLOW_BIN", pytrace=False)
    return path


BASE_CONFIG = """\
version: e2e
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc_port}
      http:
        endpoint: 127.0.0.1:{http_port}
{http_extra}{receivers_extra}exporters:
  prometheus:
    endpoint: 127.0.0.1:{prom_port}
{exporters_extra}pipeline:
  evaluation_interval: {interval}
  shutdown_timeout: 3s
{pipeline_extra}windows:
  sizes: [1m, 5m]
"""


class Process:
    """A child process whose output goes to `log_path`; `stop()` ends it (SIGTERM, then
    SIGKILL) and is what every fixture's finaliser calls, also when a test fails."""

    def __init__(self, argv: list, workdir: Path, log_name: str, env: dict):
        self.log_path = workdir / log_name
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            argv,
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        self.http = http_session()
        self.exit_code = None

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.exit_code = self.proc.returncode
        self._log.close()
        return self.exit_code


class Cerflow(Process):
    def __init__(self, binary: Path, workdir: Path, body: str, exporters: str = "", pipeline: str = "",
                 interval: str = "100ms", http: str = "", receivers: str = ""):
        self.grpc_port, self.http_port, self.prom_port = free_ports(3)
        self.config_path = workdir / "cerflow.yaml"
        self.config_text = BASE_CONFIG.format(
            grpc_port=self.grpc_port,
            http_port=self.http_port,
            prom_port=self.prom_port,
            exporters_extra=exporters,
            pipeline_extra=pipeline,
            interval=interval,
            http_extra=http,
            receivers_extra=receivers,
        ) + body
        self.config_path.write_text(self.config_text)
        # cwd is the test's own directory: relative paths cerflow writes (its SLO
        # checkpoint) never land in the repository, and no state carries over between tests.
        super().__init__(
            [str(binary), "--config", str(self.config_path)],
            workdir,
            "cerflow.log",
            dict(os.environ, RUST_LOG="info", NO_COLOR="1"),
        )
        self._wait_healthy()

    # Endpoints, as each client wants them.
    @property
    def grpc_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.grpc_port}"

    @property
    def http_traces_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/v1/traces"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.prom_port}/metrics"

    def _wait_healthy(self, timeout: float = 20.0):
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.prom_port}/healthz"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(
                    f"cerflow exited with {self.proc.returncode} at start-up.\n"
                    f"config:\n{self.config_text}\nlog:\n{self.log()}",
                    pytrace=False,
                )
            try:
                r = self.http.get(url, timeout=1)
                if r.status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.05)
        pytest.fail(f"cerflow did not answer {url} within {timeout}s.\nlog:\n{self.log()}", pytrace=False)

    def metrics(self) -> Metrics:
        r = self.http.get(self.metrics_url, timeout=5)
        r.raise_for_status()
        assert r.headers["content-type"].startswith("text/plain"), r.headers["content-type"]
        return Metrics.parse(r.text)

    def wait_for(self, expected: dict, timeout: float = 15.0) -> Metrics:
        """Polls /metrics until every sample in `expected` has its value, then asserts
        equality (so a timeout fails with a readable diff). A value of None means the
        sample must be absent."""
        deadline = time.monotonic() + timeout
        while True:
            m = self.metrics()
            if all(same(m.samples.get(k), v) for k, v in expected.items()):
                return m
            if time.monotonic() > deadline:
                wrong = {
                    fmt_key(k): {"expected": v, "got": m.samples.get(k)}
                    for k, v in expected.items()
                    if not same(m.samples.get(k), v)
                }
                lines = "\n".join(f"  {k}: expected {d['expected']!r}, got {d['got']!r}" for k, d in wrong.items())
                pytest.fail(
                    f"{len(wrong)} of {len(expected)} samples still wrong after {timeout}s:\n{lines}\n"
                    f"--- /metrics ---\n{m.text}\n--- cerflow log ---\n{self.log()}",
                    pytrace=False,
                )
            time.sleep(0.1)



@pytest.fixture(scope="session")
def cerflow_bin() -> Path:
    return cerflow_binary()


@pytest.fixture
def start_cerflow(cerflow_bin, tmp_path):
    """start_cerflow(yaml_body) -> a running Cerflow. `yaml_body` is appended to a base
    config holding the listeners (free ports), a 100ms evaluation interval and 1m/5m windows.
    `exporters` and `pipeline` are extra lines (indented two spaces) for those two sections
    of the base config, e.g. an OTLP push exporter or a smaller queue; `interval` replaces
    the evaluation interval (a test that must not see a tick skip a busy worker's series
    uses a longer one); `http` extra lines (indented eight) for the OTLP/HTTP listener (its
    `cors`), `receivers` (indented four) for `receivers.otlp` (`auth`, `public_rate_limit`)."""
    started: list[Cerflow] = []

    def start(body: str = "", exporters: str = "", pipeline: str = "", interval: str = "100ms",
              http: str = "", receivers: str = "") -> Cerflow:
        workdir = tmp_path / f"cerflow{len(started)}"
        workdir.mkdir()
        c = Cerflow(cerflow_bin, workdir, body, exporters, pipeline, interval, http, receivers)
        started.append(c)
        return c

    yield start
    problems = []
    for c in started:
        code = c.stop()
        # Printed output shows only when the test fails.
        print(f"--- cerflow log ({c.log_path}) ---\n{c.log()}")
        if code != 0:
            problems.append(f"cerflow exited with {code} after SIGTERM (expected 0)")
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)


def which_or_fail(name: str, *candidates: str) -> str:
    for c in candidates:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    found = shutil.which(name)
    if not found:
        pytest.fail(f"{name} is not installed (scripts/test.sh installs it)", pytrace=False)
    return found
