"""The JMS and AMQP tutorial pages in headless Chromium against services with a realm
(tests/browser/auth.mjs): a real gateway, ActiveMQ and RabbitMQ, a password file; and an
echo service behind the realm, whose handshake refusal (401) the echo page explains."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import BIN, ROOT, GatewayProcess, free_port, gateway_xml, service_xml
from tests.integration.conftest import activemq, rabbitmq  # noqa: F401  (session fixtures)

pytestmark = pytest.mark.slow


def test_tutorial_pages_log_in(tmp_path: Path, activemq: tuple[str, int],  # noqa: F811
                               rabbitmq: tuple[str, int]) -> None:  # noqa: F811
    if not shutil.which("node") or not os.path.exists("/usr/bin/chromium"):
        pytest.fail("browser tests need node and /usr/bin/chromium: run `make test`")
    if not os.path.exists(os.path.join(ROOT, "web", "vendor", "stomp.umd.min.js")) or \
            not os.path.exists(os.path.join(ROOT, "web", "vendor", "amqp-websocket-client.mjs")):
        subprocess.run([os.path.join(ROOT, "scripts", "vendor-web.sh")], cwd=ROOT, check=True,
                       timeout=300)
    users = os.path.join(str(tmp_path), "users.passwd")
    subprocess.run([os.path.join(BIN, "kgateway"), "passwd", users, "alice", "--stdin",
                    "--role", "ops"], input="alice-secret\n", text=True, check=True,
                   capture_output=True)
    security = ("<security><realm><name>staff</name><authentication><http-challenge-scheme>"
                "Basic</http-challenge-scheme><login-modules><login-module><type>file</type>"
                f"<success>required</success><options><file>{users}</file></options>"
                "</login-module></login-modules></authentication></realm></security>")
    # PAGES_SCREENSHOTS=dir keeps the screenshots (jms-refused.png, amqp-refused.png)
    shots = os.environ.get("PAGES_SCREENSHOTS", str(tmp_path))
    port = free_port()
    (mq_host, mq_port), (rmq_host, rmq_port) = activemq, rabbitmq
    guarded = ("<realm-name>staff</realm-name><authorization-constraint><require-role>ops"
               "</require-role></authorization-constraint>")
    services = [
        service_xml("directory", f"http://127.0.0.1:{port}/", name="web",
                    properties=f"<directory>{os.path.join(ROOT, 'web')}</directory>"),
        service_xml("jms", f"ws://127.0.0.1:{port}/jms", f"stomp://{mq_host}:{mq_port}",
                    name="jms", extra=guarded),
        service_xml("echo", f"ws://127.0.0.1:{port}/echo", name="echo", extra=guarded),
        service_xml("amqp.proxy", f"ws://127.0.0.1:{port}/amqp", f"tcp://{rmq_host}:{rmq_port}",
                    name="amqp", extra=guarded,
                    properties="<broker.login>guest</broker.login>"
                               "<broker.passcode>guest</broker.passcode>"),
    ]
    with GatewayProcess(gateway_xml(services, security), name="auth-browser",
                        args=["--drain-grace", "0"]):
        result = subprocess.run(["node", os.path.join(ROOT, "tests", "browser", "auth.mjs"),
                                 f"http://127.0.0.1:{port}"],
                                cwd=ROOT, capture_output=True, text=True, timeout=120,
                                env={**os.environ, "SCREENSHOT_DIR": shots})
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report.get("ok") is True and report["checked"] >= 10, report
