"""Headless Chromium through an Enterprise Shield pair over wss, with the test CA.

    Chromium --https/wss--> DMZ gateway (page + proxy to reverse+wss) <== internal gateway (echo)

Chromium accepts the DMZ gateway's certificate by its key's SPKI hash
(--ignore-certificate-errors-spki-list), not by ignoring certificate errors altogether.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from kgateway.certs import make_certificate
from tests.helpers import ROOT, GatewayProcess, free_port, gateway_xml, service_xml

pytestmark = pytest.mark.slow


def _spki_hash(cert_file: str) -> str:
    with open(cert_file, "rb") as f:
        leaf = x509.load_pem_x509_certificates(f.read())[0]
    der = leaf.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def _security(cert: tuple[str, str], ca: str) -> str:
    return (f"<security><keystore><certificate-file>{cert[0]}</certificate-file>"
            f"<key-file>{cert[1]}</key-file></keystore>"
            f"<truststore><file>{ca}</file></truststore></security>")


def test_browser_reaches_internal_echo_through_the_shield(tmp_path) -> None:  # type: ignore[no-untyped-def]
    if not shutil.which("node") or not os.path.exists("/usr/bin/chromium"):
        pytest.skip("needs node and /usr/bin/chromium")
    folder = str(tmp_path)
    ca = os.path.join(folder, "ca.pem")
    dmz_cert = make_certificate(folder, "localhost", ["127.0.0.1"])
    internal_cert = make_certificate(folder, "internal.test", ["127.0.0.1"])
    app = tmp_path / "app"
    app.mkdir()
    (app / "index.html").write_text("<!doctype html><title>shield</title><p>inside</p>")
    public, backplane = free_port(), free_port()
    shield = f"reverse+wss://127.0.0.1:{backplane}/shield/echo"
    dmz = GatewayProcess(gateway_xml([
        service_xml("directory", f"https://localhost:{public}/app/", name="page",
                    properties=f"<directory>{app}</directory>"),
        service_xml("proxy", f"wss://localhost:{public}/echo", shield, name="public-echo",
                    extra="<connect-options><reverse.allowed.names>internal.test"
                          "</reverse.allowed.names></connect-options>"),
    ], _security(dmz_cert, ca)), name="dmz")
    internal = GatewayProcess(gateway_xml([service_xml("echo", shield, name="internal-echo")],
                                          _security(internal_cert, ca)), name="internal")
    with dmz, internal:
        internal.wait_for("internal-echo: reverse connection prepared")
        result = subprocess.run(
            ["node", os.path.join(ROOT, "tests", "browser", "shield.mjs"),
             f"https://localhost:{public}/app/", _spki_hash(dmz_cert[0])],
            cwd=ROOT, capture_output=True, text=True, timeout=90)
        assert result.returncode == 0, f"{result.stdout}\n{result.stderr}\n{dmz.log()}"
        line = json.loads(result.stdout.strip().splitlines()[-1])
        assert line["ok"] and line["text"] == "through the shield ☃"
        dmz.wait_for(r"public-echo: reverse connection from 127\.0\.0\.1:\d+ "
                     r"\(certificate internal\.test\) prepared")
