"""web/echo in headless Chromium (tests/browser/echo.mjs) against a real gateway process
running the default etc/gateway.xml, as a user opening http://localhost:8000/echo/ would;
then refused handshakes (wrong path, a page of another origin, no gateway) and the page's
explanation of each."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import ROOT, GatewayProcess, free_port, gateway_xml, service_xml

pytestmark = pytest.mark.slow


def test_echo_page_sends_and_receives_text_and_binary(tmp_path: Path) -> None:
    if not shutil.which("node") or not os.path.exists("/usr/bin/chromium"):
        pytest.fail("browser tests need node and /usr/bin/chromium: run `make test`, "
                    "which installs them (scripts/system-deps.sh)")
    # PAGES_SCREENSHOTS=dir keeps the screenshot (echo.png) for a look
    shots = os.environ.get("PAGES_SCREENSHOTS", str(tmp_path))
    port = free_port()
    with GatewayProcess(os.path.join(ROOT, "etc", "gateway.xml"),
                        defines=[f"gateway.port={port}"], args=["--drain-grace", "0"],
                        name="echo-browser"):
        result = subprocess.run(["node", os.path.join(ROOT, "tests", "browser", "echo.mjs"),
                                 f"http://localhost:{port}"],
                                cwd=ROOT, capture_output=True, text=True, timeout=90,
                                env={**os.environ, "SCREENSHOT_DIR": shots})
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report.get("ok") is True, report
    # the refused handshakes were explained (wrong path, foreign origin, no gateway)
    assert set(report["explained"]) == {"notFound", "origin", "down"}, report
    assert os.path.getsize(os.path.join(shots, "echo.png")) > 10_000


def test_the_page_explains_a_message_too_big() -> None:
    """An echo service with ws.maximum.message.size 64: a longer message ends the connection
    with 1009, and the echo page says what that means (tests/browser/echo-too-big.mjs)."""
    if not shutil.which("node") or not os.path.exists("/usr/bin/chromium"):
        pytest.fail("browser tests need node and /usr/bin/chromium: run `make test`")
    port = free_port()
    with GatewayProcess(gateway_xml([
        service_xml("directory", f"http://127.0.0.1:{port}/", name="web",
                    properties=f"<directory>{os.path.join(ROOT, 'web')}</directory>"),
        service_xml("echo", f"ws://127.0.0.1:{port}/echo", name="echo",
                    extra="<accept-options><ws.maximum.message.size>64"
                          "</ws.maximum.message.size></accept-options>"),
    ]), args=["--drain-grace", "0"], name="echo-too-big-browser"):
        result = subprocess.run(["node", os.path.join(ROOT, "tests", "browser",
                                                      "echo-too-big.mjs"),
                                 f"http://127.0.0.1:{port}", "64"],
                                cwd=ROOT, capture_output=True, text=True, timeout=90)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report.get("ok") is True, report
