"""The status page (kgateway.services.status) in headless Chromium (tests/browser/status.mjs)
against a real gateway: the tutorials, echo, a jms service whose broker is a closed port,
and the status service, on one port as in etc/gateway.xml."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from tests.helpers import ROOT, GatewayProcess, free_port, gateway_xml, service_xml

pytestmark = pytest.mark.slow


def test_status_page_shows_back_ends_connections_and_errors_live(tmp_path) -> None:  # type: ignore[no-untyped-def]
    if not shutil.which("node") or not os.path.exists("/usr/bin/chromium"):
        pytest.fail("browser tests need node and /usr/bin/chromium: run `make test`, "
                    "which installs them (scripts/system-deps.sh)")
    port, closed = free_port(), free_port()
    web = f"http://127.0.0.1:{port}"
    config = gateway_xml([
        service_xml("directory", f"{web}/", name="tutorials",
                    properties=f"<directory>{ROOT}/web</directory>"
                               "<welcome-file>index.html</welcome-file>"),
        service_xml("echo", f"ws://127.0.0.1:{port}/echo", name="echo"),
        service_xml("jms", f"ws://127.0.0.1:{port}/jms", f"stomp://127.0.0.1:{closed}",
                    name="stomp"),
        service_xml("status", f"{web}/status", name="status"),
    ])
    shot = os.environ.get("STATUS_SCREENSHOT", str(tmp_path / "status.png"))
    with GatewayProcess(config, args=["--drain-grace", "0"], name="status-browser") as gw:
        gw.wait_for(r"jms: broker .* unreachable")
        result = subprocess.run(["node", os.path.join(ROOT, "tests", "browser", "status.mjs"),
                                 web, shot], cwd=ROOT, capture_output=True, text=True,
                                timeout=90)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report.get("ok") is True, report
    assert os.path.getsize(shot) > 10_000
