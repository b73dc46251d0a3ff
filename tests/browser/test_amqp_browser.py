"""web/amqp in headless Chromium (tests/browser/amqp.mjs): two independent browsers, the
default etc/gateway.xml in a real gateway process (its amqp service at /amqp to RabbitMQ on
localhost:5672), as a user opening http://localhost:8000/amqp/ would; the order of steps
and a publish to a missing exchange, explained without losing the connection."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import ROOT, GatewayProcess, free_port, gateway_xml, service_xml
from tests.integration.conftest import rabbitmq  # noqa: F401  (the session fixture)

pytestmark = pytest.mark.slow

BUNDLE = os.path.join(ROOT, "web", "vendor", "amqp-websocket-client.mjs")


def test_two_browsers_publish_consume_tx_and_flow(rabbitmq: tuple[str, int],  # noqa: F811
                                                 tmp_path: Path) -> None:
    if not shutil.which("node") or not os.path.exists("/usr/bin/chromium"):
        pytest.fail("browser tests need node and /usr/bin/chromium: run `make test`, "
                    "which installs them (scripts/system-deps.sh)")
    if not os.path.exists(BUNDLE):
        # The page loads the client from /vendor/: the project's own script puts it there.
        subprocess.run([os.path.join(ROOT, "scripts", "vendor-web.sh")], cwd=ROOT, check=True,
                       timeout=300)
    # PAGES_SCREENSHOTS=dir keeps the screenshot (amqp.png) for a look
    shots = os.environ.get("PAGES_SCREENSHOTS", str(tmp_path))
    port = free_port()
    with GatewayProcess(os.path.join(ROOT, "etc", "gateway.xml"),
                        defines=[f"gateway.port={port}"], args=["--drain-grace", "0"],
                        name="amqp-browser"):
        result = subprocess.run(["node", os.path.join(ROOT, "tests", "browser", "amqp.mjs"),
                                 f"http://localhost:{port}"],
                                cwd=ROOT, capture_output=True, text=True, timeout=120,
                                env={**os.environ, "SCREENSHOT_DIR": shots})
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report.get("ok") is True and report["checked"] >= 10, report
    assert os.path.getsize(os.path.join(shots, "amqp.png")) > 10_000


def test_the_page_explains_a_bad_gateway_close() -> None:
    """amqp.proxy to a closed port: the gateway closes the page's WebSocket with 1014, and the
    page says what that means (tests/browser/amqp-outage.mjs)."""
    if not shutil.which("node") or not os.path.exists("/usr/bin/chromium"):
        pytest.fail("browser tests need node and /usr/bin/chromium: run `make test`")
    if not os.path.exists(BUNDLE):
        subprocess.run([os.path.join(ROOT, "scripts", "vendor-web.sh")], cwd=ROOT, check=True,
                       timeout=300)
    port, closed = free_port(), free_port()
    with GatewayProcess(gateway_xml([
        service_xml("directory", f"http://127.0.0.1:{port}/", name="web",
                    properties=f"<directory>{os.path.join(ROOT, 'web')}</directory>"),
        service_xml("amqp.proxy", f"ws://127.0.0.1:{port}/amqp", f"tcp://127.0.0.1:{closed}",
                    name="amqp"),
    ]), args=["--drain-grace", "0"], name="amqp-outage-browser"):
        result = subprocess.run(["node", os.path.join(ROOT, "tests", "browser",
                                                      "amqp-outage.mjs"),
                                 f"http://127.0.0.1:{port}"],
                                cwd=ROOT, capture_output=True, text=True, timeout=90)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report.get("ok") is True and report["reason"], report
