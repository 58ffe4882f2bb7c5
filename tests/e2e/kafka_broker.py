"""A real single-node Apache Kafka broker (KRaft) for cerflow's end-to-end tests.

The jars come from scripts/kafka.sh (Maven Central, cached in .cache/kafka/<hash>/libs);
scripts/test.sh passes their folder in $CERFLOW_KAFKA_LIBS, and without it the fixture
runs the script itself. Each test that asks for `kafka_broker` gets its own broker on
free 127.0.0.1 ports and a fresh log directory, stopped with SIGTERM at the end (also
when the test fails). tests/common/kafka.rs is the Rust twin of this fixture.
"""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import REPO, Process, free_ports

# The broker logs this once it serves clients.
READY = "Kafka Server started"

LOG4J = """\
log4j.rootLogger=WARN, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.server.KafkaRaftServer=INFO
"""


def kafka_libs() -> Path:
    env = os.environ.get("CERFLOW_KAFKA_LIBS")
    if env:
        return Path(env)
    out = subprocess.run(["bash", str(REPO / "scripts" / "kafka.sh")], capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        pytest.fail(f"scripts/kafka.sh failed (it needs java and mvn):\n{out.stderr}", pytrace=False)
    return Path(out.stdout.strip())


class Kafka(Process):
    def __init__(self, libs: Path, workdir: Path):
        self.libs = libs
        self.port, self.controller_port = free_ports(2)
        props = workdir / "server.properties"
        props.write_text(
            "process.roles=broker,controller\n"
            "node.id=1\n"
            f"controller.quorum.bootstrap.servers=127.0.0.1:{self.controller_port}\n"
            f"listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}\n"
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}\n"
            "controller.listener.names=CONTROLLER\n"
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT\n"
            f"log.dirs={workdir}/data\n"
            "num.partitions=1\n"
            "offsets.topic.replication.factor=1\n"
            "offsets.topic.num.partitions=4\n"
            "transaction.state.log.replication.factor=1\n"
            "transaction.state.log.min.isr=1\n"
            "group.initial.rebalance.delay.ms=0\n"
            "auto.create.topics.enable=false\n"
        )
        (workdir / "log4j.properties").write_text(LOG4J)
        cluster_id = base64.urlsafe_b64encode(bytes([0x5A] * 16)).decode().rstrip("=")
        fmt = subprocess.run(
            ["java", "-cp", self.classpath, "kafka.tools.StorageTool", "format", "--standalone",
             "-t", cluster_id, "-c", str(props)],
            capture_output=True, text=True, timeout=120,
        )
        if fmt.returncode != 0:
            pytest.fail(f"formatting the Kafka log dir failed:\n{fmt.stdout}{fmt.stderr}", pytrace=False)
        super().__init__(
            ["java", "-Xmx512m", f"-Dlog4j.configuration=file:{workdir / 'log4j.properties'}",
             "-cp", self.classpath, "kafka.Kafka", str(props)],
            workdir,
            "kafka.log",
            dict(os.environ),
        )
        self._wait_ready()

    @property
    def classpath(self) -> str:
        return f"{self.libs}/*"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _wait_ready(self, timeout: float = 120.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"the Kafka broker exited with {self.proc.returncode}:\n{self.log()}", pytrace=False)
            if READY in self.log():
                try:
                    socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                    return
                except OSError:
                    pass
            time.sleep(0.2)
        pytest.fail(f"the Kafka broker was not ready within {timeout}s:\n{self.log()}", pytrace=False)

    def create_topic(self, topic: str, partitions: int):
        """Creates `topic` with Kafka's own tool (kafka-tools is in the jars)."""
        out = subprocess.run(
            ["java", "-cp", self.classpath, "org.apache.kafka.tools.TopicCommand",
             "--bootstrap-server", self.bootstrap, "--create", "--topic", topic,
             "--partitions", str(partitions), "--replication-factor", "1"],
            capture_output=True, text=True, timeout=120,
        )
        assert out.returncode == 0, f"creating topic {topic}:\n{out.stdout}{out.stderr}"


@pytest.fixture
def kafka_broker(tmp_path):
    workdir = tmp_path / "kafka"
    workdir.mkdir()
    k = Kafka(kafka_libs(), workdir)
    yield k
    k.stop(timeout=30)
    log = k.log()
    print(f"--- kafka log ({k.log_path}), last lines ---\n" + "\n".join(log.splitlines()[-40:]))
