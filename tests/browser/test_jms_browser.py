"""web/jms in two headless Chromium browsers (tests/browser/jms.mjs): real gateway, ActiveMQ.

The page loads ``/vendor/stomp.umd.min.js``; if web/vendor/ has not been filled by
scripts/vendor-web.sh, the test serves a copy of web/ with the bundle from node_modules.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import ROOT, GatewayProcess, free_port, gateway_xml, service_xml
from tests.integration.conftest import activemq  # noqa: F401  (the session fixture)

pytestmark = pytest.mark.slow

BUNDLE = "stomp.umd.min.js"
NODE_BUNDLE = os.path.join(ROOT, "node_modules", "@stomp", "stompjs", "bundles", BUNDLE)


@pytest.fixture(scope="module")
def web_root(tmp_path_factory: pytest.TempPathFactory) -> str:
    web = os.path.join(ROOT, "web")
    if os.path.exists(os.path.join(web, "vendor", BUNDLE)):
        return web
    if not os.path.exists(NODE_BUNDLE):
        pytest.skip("no STOMP browser bundle: run npm ci (and scripts/vendor-web.sh)")
    root = str(tmp_path_factory.mktemp("web"))
    shutil.copytree(os.path.join(web, "jms"), os.path.join(root, "jms"))
    for shared in ("style.css", "log.js", "explain.js"):
        shutil.copy(os.path.join(web, shared), os.path.join(root, shared))
    os.makedirs(os.path.join(root, "vendor"))
    shutil.copy(NODE_BUNDLE, os.path.join(root, "vendor", BUNDLE))
    return root


@pytest.fixture(scope="module")
def page_url(web_root: str, activemq: tuple[str, int]) -> Iterator[str]:  # noqa: F811
    if not shutil.which("node") or not os.path.exists("/usr/bin/chromium"):
        pytest.skip("needs node and /usr/bin/chromium")
    host, port = activemq
    http = free_port()
    process = GatewayProcess(gateway_xml([
        service_xml("directory", f"http://127.0.0.1:{http}/", name="web",
                    properties=f"<directory>{web_root}</directory>"),
        service_xml("jms", f"ws://127.0.0.1:{http}/jms", f"stomp://{host}:{port}", name="jms"),
    ]), name="jms-browser").start()
    process.wait_for("connected to broker", 20)
    yield f"http://127.0.0.1:{http}/jms/"
    process.stop()


def test_two_browsers_message_and_rolled_back_transaction(page_url: str, tmp_path: Path) -> None:
    # PAGES_SCREENSHOTS=dir keeps the screenshot (jms.png) for a look
    shots = os.environ.get("PAGES_SCREENSHOTS", str(tmp_path))
    result = subprocess.run(["node", os.path.join(ROOT, "tests", "browser", "jms.mjs"), page_url],
                            cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "SCREENSHOT_DIR": shots})
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    line = json.loads(result.stdout.strip().splitlines()[-1])
    assert line["ok"] and line["delivered"] == 4, line
    assert os.path.getsize(os.path.join(shots, "jms.png")) > 10_000


def test_the_page_says_when_the_broker_is_unavailable_and_messages_wait(web_root: str) -> None:
    if not shutil.which("node") or not os.path.exists("/usr/bin/chromium"):
        pytest.skip("needs node and /usr/bin/chromium")
    http, closed = free_port(), free_port()
    with GatewayProcess(gateway_xml([
        service_xml("directory", f"http://127.0.0.1:{http}/", name="web",
                    properties=f"<directory>{web_root}</directory>"),
        service_xml("jms", f"ws://127.0.0.1:{http}/jms", f"stomp://127.0.0.1:{closed}",
                    name="jms"),
    ]), args=["--drain-grace", "0"], name="jms-outage-browser") as gateway:
        gateway.wait_for("jms: broker .* unreachable")
        result = subprocess.run(["node", os.path.join(ROOT, "tests", "browser",
                                                      "jms-outage.mjs"),
                                 f"http://127.0.0.1:{http}/jms/"],
                                cwd=ROOT, capture_output=True, text=True, timeout=90)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    line = json.loads(result.stdout.strip().splitlines()[-1])
    assert line["ok"] and "(1 waiting)" in line["notice"], line
