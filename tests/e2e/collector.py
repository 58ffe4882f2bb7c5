"""The real OpenTelemetry Collector in cerflow's end-to-end tests.

The binary is built from tests/otelcol (every module pinned in its go.mod) by
scripts/test.sh, which passes its path in $OTELCOL_BIN; without that variable the tests
look for the symlink target/otelcol/otelcol the script leaves behind. Each test starts
its own Collector on free 127.0.0.1 ports with a config written for it, waits until the
Collector logs that every pipeline is running, and stops it with SIGTERM at the end
(also when the test fails).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from conftest import REPO, Metrics, Process, free_ports

# The Collector logs this once every component has started.
READY = "Everything is ready"

# Parts every test config shares: no telemetry listener of the Collector's own (it
# would take the fixed port 8888), logs on stderr, which the fixture keeps.
SERVICE_TELEMETRY = """\
  telemetry:
    metrics:
      level: none
    logs:
      level: info
"""


def otelcol_binary() -> Path:
    env = os.environ.get("OTELCOL_BIN")
    path = Path(env) if env else REPO / "target" / "otelcol" / "otelcol"
    if not path.is_file() or not os.access(path, os.X_OK):
        pytest.fail(
            f"OpenTelemetry Collector binary not found at {path}: run `bash scripts/test.sh` "
            "(it builds tests/otelcol) or set OTELCOL_BIN",
            pytrace=False,
        )
    return path


class Collector(Process):
    def __init__(self, binary: Path, workdir: Path, config_text: str, ports: dict):
        self.ports = ports
        self.config_path = workdir / "otelcol.yaml"
        self.config_text = config_text
        self.config_path.write_text(config_text)
        super().__init__(
            [str(binary), "--config", f"file:{self.config_path}"],
            workdir,
            "otelcol.log",
            {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
        )
        self._wait_ready()

    @property
    def grpc_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['grpc']}"

    def _wait_ready(self, timeout: float = 30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(
                    f"the Collector exited with {self.proc.returncode} at start-up.\n"
                    f"config:\n{self.config_text}\nlog:\n{self.log()}",
                    pytrace=False,
                )
            if READY in self.log():
                return
            time.sleep(0.05)
        pytest.fail(f"the Collector was not ready within {timeout}s.\nlog:\n{self.log()}", pytrace=False)

    def scrape(self) -> Metrics:
        """The prometheus exporter's page (the config must have one on ports['prom'])."""
        r = self.http.get(f"http://127.0.0.1:{self.ports['prom']}/metrics", timeout=5)
        r.raise_for_status()
        return Metrics.parse(r.text)


@pytest.fixture(scope="session")
def otelcol_bin() -> Path:
    return otelcol_binary()


@pytest.fixture
def start_otelcol(otelcol_bin, tmp_path):
    """start_otelcol(template) -> a running Collector. `template` is its YAML config
    without the `service.telemetry` section (added here); `{grpc}`, `{http}` and `{prom}`
    in it become free ports, readable afterwards in `Collector.ports`."""
    started: list[Collector] = []

    def start(template: str, **fmt) -> Collector:
        workdir = tmp_path / f"otelcol{len(started)}"
        workdir.mkdir()
        ports = dict(zip(("grpc", "http", "prom"), free_ports(3)))
        text = template.format(**ports, **fmt)
        assert "\nservice:\n" in text, "the config needs a service section"
        text = text.replace("\nservice:\n", "\nservice:\n" + SERVICE_TELEMETRY, 1)
        c = Collector(otelcol_bin, workdir, text, ports)
        started.append(c)
        return c

    yield start
    problems = []
    for c in started:
        code = c.stop()
        print(f"--- otelcol log ({c.log_path}) ---\n{c.log()}")
        if code != 0:
            problems.append(f"the Collector exited with {code} after SIGTERM (expected 0)")
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)
