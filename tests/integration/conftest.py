"""Real brokers for integration tests, run by the project's own scripts (scripts/*.sh).

Each broker fixture is independent and session-scoped: started once if not running (each
fixture's docstring says what happens at the end).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

import pytest

from tests.helpers import _STARTED, ROOT

UNHANDLED = ("Unhandled Error", "Unhandled error in Deferred", "Traceback (most recent call last)")


@pytest.fixture(autouse=True)
def no_unhandled_errors() -> Iterator[None]:
    """A traceback in a gateway's log (an error no code of ours handled: Twisted's "Unhandled
    Error", a Deferred's) is a bug even when the test's own assertions pass: fail the test
    during which it was logged, with the lines."""
    marks = {id(p): p.mark() for p in _STARTED}
    yield
    found = []
    for process in _STARTED:
        lines = process.lines[marks.get(id(process), 0):]
        for i, line in enumerate(lines):
            if any(u in line for u in UNHANDLED):
                found.append("\n".join(lines[max(0, i - 2):i + 15]))
                break
    if found:
        pytest.fail("a gateway logged an unhandled error:\n" + "\n---\n".join(found),
                    pytrace=False)

RABBITMQ_SH = os.path.join(ROOT, "scripts", "rabbitmq.sh")


def rabbitmq_ctl(action: str, timeout: float = 180) -> None:
    """``scripts/rabbitmq.sh start|stop``; start returns once AMQP answers on 5672."""
    subprocess.run([RABBITMQ_SH, action], check=True, timeout=timeout,
                   stdout=subprocess.DEVNULL)


@pytest.fixture(scope="session")
def rabbitmq() -> Iterator[tuple[str, int]]:
    """RabbitMQ on 127.0.0.1:5672 (guest/guest), started if needed and left running:
    test sessions run side by side on one machine, and one that stopped "its" broker at
    the end would pull it from under the others."""
    rabbitmq_ctl("start")
    yield ("127.0.0.1", 5672)


ACTIVEMQ_SH = os.path.join(ROOT, "scripts", "activemq.sh")


def activemq_ctl(action: str, timeout: float = 120) -> None:
    """``scripts/activemq.sh start|stop|kill|restart``; start returns once STOMP answers."""
    subprocess.run([ACTIVEMQ_SH, action], check=True, timeout=timeout,
                   stdout=subprocess.DEVNULL)


@pytest.fixture(scope="session")
def activemq() -> Iterator[tuple[str, int]]:
    """ActiveMQ Classic with STOMP on 127.0.0.1:61613 (OpenWire on 61616)."""
    was_running = subprocess.run([ACTIVEMQ_SH, "status"], stderr=subprocess.DEVNULL,
                                 timeout=30).returncode == 0
    activemq_ctl("start")
    yield ("127.0.0.1", 61613)
    if not was_running:
        activemq_ctl("stop")


# Real clusters and a real HTTP proxy beside the brokers above, each run by its own script
# with its state under /tmp (etc/brokers/README.md). Each fixture starts its part unless it
# already runs, and stops it at the end only if this session started it.


def _script(name: str) -> str:
    return os.path.join(ROOT, "scripts", name)


def _running(script: str, *args: str) -> bool:
    """True if ``script status`` exits 0 (everything up: nodes clustered, bridge up)."""
    return subprocess.run([script, "status", *args], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, timeout=60).returncode == 0


def _run(script: str, *args: str, timeout: float = 300) -> None:
    subprocess.run([script, *args], check=True, timeout=timeout, stdout=subprocess.DEVNULL)


@dataclass(frozen=True)
class RabbitNode:
    name: str  # "kgw1@localhost"
    host: str
    port: int  # AMQP; guest/guest


@dataclass(frozen=True)
class RabbitCluster:
    """The nodes of scripts/rabbitmq-cluster.sh, kgw1 first; kill/restart take "kgw1"..."""

    nodes: tuple[RabbitNode, ...]

    def node(self, short: str) -> RabbitNode:
        return next(n for n in self.nodes if n.name.split("@")[0] == short)

    def kill(self, short: str) -> None:
        """SIGKILL one node's VM; returns once it is gone."""
        _run(RABBITMQ_CLUSTER_SH, "kill", short, timeout=60)

    def restart(self, short: str) -> None:
        """Start one node again; returns once it runs clustered with the others."""
        _run(RABBITMQ_CLUSTER_SH, "restart", short)


RABBITMQ_CLUSTER_SH = _script("rabbitmq-cluster.sh")


@pytest.fixture(scope="session")
def rabbitmq_cluster() -> Iterator[RabbitCluster]:
    """Two clustered RabbitMQ nodes: kgw1@localhost on 127.0.0.1:5701, kgw2@localhost on
    127.0.0.1:5702 (guest/guest). Two nodes cannot keep a quorum queue available when
    one is lost: use classic queues declared through the node that must home them."""
    was_running = _running(RABBITMQ_CLUSTER_SH)
    _run(RABBITMQ_CLUSTER_SH, "start")
    yield RabbitCluster(tuple(RabbitNode(f"kgw{i}@localhost", "127.0.0.1", 5700 + i)
                              for i in (1, 2)))
    if not was_running:
        _run(RABBITMQ_CLUSTER_SH, "stop", timeout=120)


@dataclass(frozen=True)
class AmqBroker:
    name: str  # "A" or "B"
    host: str
    stomp_port: int
    openwire_port: int


@dataclass(frozen=True)
class AmqNetwork:
    """The brokers of scripts/activemq-network.sh: A and B, each bridged to the other."""

    a: AmqBroker
    b: AmqBroker

    def kill(self, name: str) -> None:
        """SIGKILL broker "A" or "B"; returns once its JVM is gone."""
        _run(ACTIVEMQ_NETWORK_SH, "kill", name, timeout=60)

    def restart(self, name: str) -> None:
        """Start broker "A" or "B" again; returns once it answers STOMP and is bridged."""
        _run(ACTIVEMQ_NETWORK_SH, "restart", name, timeout=180)


ACTIVEMQ_NETWORK_SH = _script("activemq-network.sh")


@pytest.fixture(scope="session")
def activemq_network() -> Iterator[AmqNetwork]:
    """Two ActiveMQ brokers in a network: A (STOMP 61713, OpenWire 61711) and B (STOMP
    61723, OpenWire 61721), returned once both answer STOMP and the bridge is up. A topic
    message is forwarded only once the subscriber's demand has crossed the bridge."""
    was_running = _running(ACTIVEMQ_NETWORK_SH)
    _run(ACTIVEMQ_NETWORK_SH, "start", timeout=180)
    yield AmqNetwork(AmqBroker("A", "127.0.0.1", 61713, 61711),
                     AmqBroker("B", "127.0.0.1", 61723, 61721))
    if not was_running:
        _run(ACTIVEMQ_NETWORK_SH, "stop", timeout=120)


class HttpProxy(NamedTuple):
    host: str
    port: int
    user: str
    password: str


TINYPROXY_SH = _script("tinyproxy.sh")


@pytest.fixture(scope="session")
def http_proxy() -> Iterator[HttpProxy]:
    """tinyproxy on 127.0.0.1:3128 asking for Basic credentials (KGW_PROXY_USER /
    KGW_PROXY_PASSWORD, default kgw / kgw-secret); CONNECT to any port."""
    proxy = HttpProxy("127.0.0.1", 3128, os.environ.get("KGW_PROXY_USER", "kgw"),
                      os.environ.get("KGW_PROXY_PASSWORD", "kgw-secret"))
    was_running = _running(TINYPROXY_SH)
    _run(TINYPROXY_SH, "start", timeout=60)
    yield proxy
    if not was_running:
        _run(TINYPROXY_SH, "stop", timeout=60)


SLAPD_SH = os.path.join(ROOT, "scripts", "slapd.sh")


@pytest.fixture(scope="session")
def slapd() -> Iterator[None]:
    """Our throwaway slapd on 127.0.0.1:3389 (alice, bob: password secret; groups devs and
    ops; scripts/slapd.sh); stopped at the end only if this session started it."""
    was_running = subprocess.run([SLAPD_SH, "status"], timeout=30).returncode == 0
    subprocess.run([SLAPD_SH, "start"], check=True, timeout=60)
    yield
    if not was_running:
        subprocess.run([SLAPD_SH, "stop"], check=True, timeout=60)
