"""Real brokers for integration tests, run by the project's own scripts (scripts/*.sh).

Each broker fixture is independent and session-scoped: started once if not running (each
fixture's docstring says what happens at the end).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest

from tests.helpers import ROOT

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
