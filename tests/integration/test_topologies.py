"""Production topologies with real gateway processes, across real network boundaries.

Network namespaces stand in for hosts (created by the ``hosts`` fixture, removed after):

    [internet] 10.231.1.1 --veth-- 10.231.1.2 [dmz] 10.231.2.1 --veth-- 10.231.2.2 [trusted]
                                                                 iptables INPUT in trusted:
                                                                 lo ok, established ok,
                                                                 every new inbound dropped

* DMZ to trusted network: a client on the internet reaches an echo in the trusted host via
  the DMZ gateway, over each of ws, wss, tcp and ssl between the gateways (one firewall
  pinhole per hop port, the classic set-up).
* Enterprise Shield: the same boundary with NO pinhole; the internal gateway dials out to
  the DMZ backplane and serves the clients the DMZ gateway pairs with its connections.
  A control test proves a forward connection from the DMZ into the trusted host fails.
* Loopback topologies: TLS failure cases, a virtual private connection with pika/stomp.py
  to the real brokers where they run, UDP over WebSocket, PKCS#12 keystores.

Without root the namespace tests skip with a loud reason; as root a failure to build the
namespaces fails them (the boundary is the point of these tests).
"""

from __future__ import annotations

import json
import os
import re
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import websocket

from kgateway.certs import make_certificate
from tests.helpers import (
    ROOT,
    GatewayProcess,
    free_port,
    gateway_xml,
    recv_exactly,
    service_xml,
)

#: the DMZ side's reverse+wss connects accept only the internal gateway's certificate name
ALLOW_INTERNAL = ("<connect-options><reverse.allowed.names>internal.test"
                  "</reverse.allowed.names></connect-options>")

TINYPROXY_SH = os.path.join(ROOT, "scripts", "tinyproxy.sh")

INTERNET, DMZ, TRUSTED = "kgt-internet", "kgt-dmz", "kgt-trusted"
INTERNET_IP, DMZ_PUBLIC_IP, DMZ_INSIDE_IP, TRUSTED_IP = (
    "10.231.1.1", "10.231.1.2", "10.231.2.1", "10.231.2.2")


# -- certificates ----------------------------------------------------------------------------


@dataclass
class Pki:
    folder: str
    ca: str
    dmz: tuple[str, str]
    internal: tuple[str, str]
    expired: tuple[str, str]
    rogue: tuple[str, str]  # signed by another CA
    elsewhere: tuple[str, str]  # names neither localhost nor any address

    def security(self, identity: tuple[str, str], ca: str | None = None) -> str:
        cert, key = identity
        return (f"<security><keystore><certificate-file>{cert}</certificate-file>"
                f"<key-file>{key}</key-file></keystore>"
                f"<truststore><file>{ca or self.ca}</file></truststore></security>")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = str(tmp_path_factory.mktemp("pki"))
    rogue_folder = str(tmp_path_factory.mktemp("rogue-pki"))
    return Pki(
        folder, os.path.join(folder, "ca.pem"),
        make_certificate(folder, "dmz.test", ["localhost", "127.0.0.1", DMZ_PUBLIC_IP,
                                              DMZ_INSIDE_IP]),
        make_certificate(folder, "internal.test", ["127.0.0.1"]),
        make_certificate(folder, "internal.test", ["127.0.0.1"], expired=True),
        make_certificate(rogue_folder, "internal.test", ["127.0.0.1"]),
        make_certificate(folder, "elsewhere.test"),
    )


# -- network namespaces ----------------------------------------------------------------------


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


def _in(ns: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", ns, *args], check=check,
                          capture_output=True, text=True)


def _delete_namespaces() -> None:
    for ns in (INTERNET, DMZ, TRUSTED):
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


@pytest.fixture(scope="module")
def hosts() -> Iterator[None]:
    if os.geteuid() != 0:
        pytest.skip("LOUD SKIP: network-namespace topology tests need root (ip netns, "
                    "iptables); the DMZ/trusted boundary was NOT tested")
    _delete_namespaces()
    try:
        for ns in (INTERNET, DMZ, TRUSTED):
            _ip("netns", "add", ns)
            _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", INTERNET, "link", "add", "inet0", "type", "veth", "peer", "name", "dmz-pub",
            "netns", DMZ)
        _ip("-n", DMZ, "link", "add", "dmz-in", "type", "veth", "peer", "name", "trusted0",
            "netns", TRUSTED)
        for ns, dev, address in ((INTERNET, "inet0", INTERNET_IP), (DMZ, "dmz-pub", DMZ_PUBLIC_IP),
                                 (DMZ, "dmz-in", DMZ_INSIDE_IP), (TRUSTED, "trusted0", TRUSTED_IP)):
            _ip("-n", ns, "addr", "add", f"{address}/24", "dev", dev)
            _ip("-n", ns, "link", "set", dev, "up")
        # The trusted host accepts no inbound connection at all.
        for rule in (["-A", "INPUT", "-i", "lo", "-j", "ACCEPT"],
                     ["-A", "INPUT", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED",
                      "-j", "ACCEPT"],
                     ["-A", "INPUT", "-j", "DROP"]):
            _in(TRUSTED, "iptables", *rule)
    except (subprocess.CalledProcessError, FileNotFoundError) as e:
        _delete_namespaces()
        detail = getattr(e, "stderr", "") or str(e)
        pytest.fail(f"running as root but cannot build the test network (ip netns, veth, "
                    f"iptables): {detail}")
    yield
    _delete_namespaces()


class NsGateway(GatewayProcess):
    """A gateway process inside a network namespace."""

    def __init__(self, ns: str, config: str, **kw: object) -> None:
        super().__init__(config, **kw)  # type: ignore[arg-type]
        self.ns = ns

    def command(self) -> list[str]:
        return ["ip", "netns", "exec", self.ns, *super().command()]


def client(ns: str, *args: str) -> tuple[int, dict[str, object]]:
    proc = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-m",
                           "tests.integration.nsclient", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    lines = proc.stdout.strip().splitlines()
    assert lines, f"nsclient printed nothing: {proc.stderr}"
    return proc.returncode, json.loads(lines[-1])


def _listening(ns: str) -> list[str]:
    out = _in(ns, "ss", "-Hltnu").stdout
    return [line.split()[4] for line in out.splitlines() if line.strip()]


def _shield_pair(pki: Pki, *, count: int = 2, internal_ns: str | None = TRUSTED,
                 dmz_ns: str | None = DMZ, dmz_identity: tuple[str, str] | None = None,
                 ) -> tuple[GatewayProcess, GatewayProcess, dict[str, str]]:
    """A DMZ gateway with an Enterprise Shield backplane, and the internal gateway."""
    netns = dmz_ns is not None
    public_ip = DMZ_PUBLIC_IP if netns else "127.0.0.1"
    inside_ip = DMZ_INSIDE_IP if netns else "127.0.0.1"
    public, public_tls, backplane, broker = free_port(), free_port(), free_port(), free_port()
    urls = {
        "ws": f"ws://{public_ip}:{public}/echo",
        "wss": f"wss://{public_ip}:{public_tls}/echo",
        "broker": f"ws://{public_ip}:{public}/broker",
        "shield": f"reverse+wss://{inside_ip}:{backplane}/shield/echo",
        "shield-broker": f"reverse+wss://{inside_ip}:{backplane}/shield/broker",
    }
    timeout = ("<connect-options><reverse.timeout>5sec</reverse.timeout>"
               "<reverse.allowed.names>internal.test</reverse.allowed.names></connect-options>")
    dmz_config = gateway_xml([
        service_xml("proxy", [urls["ws"], urls["wss"]], urls["shield"], name="public-echo",
                    extra=timeout),
        service_xml("proxy", urls["broker"], urls["shield-broker"], name="public-broker",
                    extra=timeout),
    ], pki.security(dmz_identity or pki.dmz))
    reverse = (f"<accept-options><reverse.prepared.connection.count>{count}"
               "</reverse.prepared.connection.count>"
               "<reverse.retry.initial.interval>100ms</reverse.retry.initial.interval>"
               "<reverse.retry.maximum.interval>1sec</reverse.retry.maximum.interval>"
               "<reverse.keepalive.interval>2sec</reverse.keepalive.interval>"
               "</accept-options>")
    internal_config = gateway_xml([
        service_xml("echo", urls["shield"], name="internal-echo", extra=reverse),
        service_xml("proxy", urls["shield-broker"], f"tcp://127.0.0.1:{broker}",
                    name="internal-broker", extra=reverse),
        service_xml("echo", f"tcp://127.0.0.1:{broker}", name="broker-stand-in"),
    ], pki.security(pki.internal))
    if netns:
        assert dmz_ns is not None and internal_ns is not None
        dmz: GatewayProcess = NsGateway(dmz_ns, dmz_config, name="dmz")
        internal: GatewayProcess = NsGateway(internal_ns, internal_config, name="internal")
    else:
        dmz = GatewayProcess(dmz_config, name="dmz")
        internal = GatewayProcess(internal_config, name="internal")
    return dmz, internal, urls


# -- across the boundary ---------------------------------------------------------------------


def test_control_forward_connection_from_dmz_into_trusted_is_refused(hosts: None) -> None:
    """A server listens in the trusted host; the DMZ cannot reach it, the host itself can."""
    port = free_port()
    server = subprocess.Popen(["ip", "netns", "exec", TRUSTED, sys.executable, "-c",
                               "import socket,sys; s=socket.create_server(('0.0.0.0', "
                               f"{port})); print('up', flush=True); s.accept()"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "up"
        code, outcome = client(DMZ, "probe", TRUSTED_IP, str(port), "--timeout", "2")
        assert code == 1 and outcome["error"] in ("TimeoutError", "timeout"), outcome
        code, outcome = client(TRUSTED, "probe", TRUSTED_IP, str(port))
        assert code == 0, outcome
    finally:
        server.kill()
        server.wait()


def test_dmz_to_trusted_network_over_each_hop_scheme(hosts: None, pki: Pki) -> None:
    ports = {s: free_port() for s in ("ws", "wss", "tcp", "ssl")}
    internal_urls = {
        "ws": f"ws://{TRUSTED_IP}:{ports['ws']}/echo",
        "wss": f"wss://{TRUSTED_IP}:{ports['wss']}/echo",
        "tcp": f"tcp://{TRUSTED_IP}:{ports['tcp']}",
        "ssl": f"ssl://{TRUSTED_IP}:{ports['ssl']}",
    }
    pinholes = [["INPUT", "1", "-s", DMZ_INSIDE_IP, "-p", "tcp", "--dport", str(p), "-j",
                 "ACCEPT"] for p in ports.values()]
    for rule in pinholes:
        _in(TRUSTED, "iptables", "-I", *rule)
    public = free_port()
    trusted_cert = make_certificate(pki.folder, "trusted.test", [TRUSTED_IP])
    internal = NsGateway(TRUSTED, gateway_xml(
        [service_xml("echo", list(internal_urls.values()), name="internal-echo")],
        pki.security(trusted_cert)), name="internal")
    dmz = NsGateway(DMZ, gateway_xml(
        [service_xml("proxy", f"ws://{DMZ_PUBLIC_IP}:{public}/{s}", url, name=f"to-{s}")
         for s, url in internal_urls.items()], pki.security(pki.dmz)), name="dmz")
    try:
        with internal, dmz:
            for scheme in internal_urls:
                code, outcome = client(INTERNET, "ws", f"ws://{DMZ_PUBLIC_IP}:{public}/{scheme}")
                assert code == 0, (scheme, outcome)
                assert outcome["replies"] == ["message 0", "message 1", "message 2"]
    finally:
        for rule in pinholes:
            _in(TRUSTED, "iptables", "-D", *[r for i, r in enumerate(rule) if i != 1],
                check=False)


def test_enterprise_shield_across_the_boundary_and_dmz_restart(hosts: None, pki: Pki) -> None:
    dmz, internal, urls = _shield_pair(pki)
    with dmz, internal:
        internal.wait_for(r"internal-echo: reverse connection prepared .*\(2/2\)")
        internal.wait_for(r"internal-broker: reverse connection prepared .*\(2/2\)")
        # Nothing in the trusted host listens anywhere but on loopback.
        listening = _listening(TRUSTED)
        assert listening and all(a.startswith(("127.0.0.1:", "[::1]:")) for a in listening), \
            listening
        for url in (urls["ws"], urls["broker"]):
            code, outcome = client(INTERNET, "ws", url)
            assert code == 0 and outcome["replies"] == ["message 0", "message 1", "message 2"], \
                outcome
        code, outcome = client(INTERNET, "ws", urls["wss"], "--ca", pki.ca)
        assert code == 0, outcome
        dmz.wait_for(r"public-echo: reverse connection from 10\.231\.2\.2:\d+ "
                     r"\(certificate internal\.test\) prepared")
        # Used connections were replaced at once: the pool is full again.
        mark = internal.mark()
        code, _ = client(INTERNET, "ws", urls["ws"])
        assert code == 0
        internal.wait_for(r"internal-echo: reverse connection prepared", start=mark)

        # The DMZ gateway restarts; the internal one reconnects by itself.
        mark = internal.mark()
        dmz.stop()
        internal.wait_for(r"internal-echo: reverse connection to .* failed", start=mark)
        dmz.restart()
        internal.wait_for(r"internal-echo: reverse connection prepared", start=mark)
        code, outcome = client(INTERNET, "ws", urls["ws"])
        assert code == 0, outcome


def test_enterprise_shield_through_a_corporate_http_proxy_only(hosts: None, pki: Pki,
                                                               tmp_path: Path) -> None:
    """The trusted host may not reach the DMZ directly (iptables OUTPUT: only the proxy's
    port); the internal gateway's reverse connections go through tinyproxy (Basic auth) at
    the DMZ edge, TLS inside the tunnel."""
    user, password = "kgw", "kgw-secret"
    proxy_port = 3128
    env = {**os.environ, "KGW_PROXY_USER": user, "KGW_PROXY_PASSWORD": password}
    proxy_cmd = ["ip", "netns", "exec", DMZ, TINYPROXY_SH]
    proxy_args = ["--listen", DMZ_INSIDE_IP, "--port", str(proxy_port)]
    # Allowed: the trusted host, and the proxy's own address (the script's health check).
    started = subprocess.run([*proxy_cmd, "start", *proxy_args, "--allow", TRUSTED_IP,
                              "--allow", DMZ_INSIDE_IP],
                             env=env, timeout=60, capture_output=True, text=True)
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        _shield_through_proxy(pki, tmp_path, user, password, proxy_port)
    finally:
        subprocess.run([*proxy_cmd, "stop", *proxy_args], env=env, timeout=60,
                       capture_output=True)


def _shield_through_proxy(pki: Pki, tmp_path: Path, user: str, password: str,
                          proxy_port: int) -> None:
    blocked = [["-A", "OUTPUT", "-d", DMZ_INSIDE_IP, "-p", "tcp", "--dport", str(proxy_port),
                "-j", "ACCEPT"],
               ["-A", "OUTPUT", "-d", DMZ_INSIDE_IP, "-j", "REJECT"]]
    for rule in blocked:
        _in(TRUSTED, "iptables", *rule)
    cred = tmp_path / "proxy.credentials"
    cred.write_text(f"{user}:{password}\n")
    public, backplane = free_port(), free_port()
    shield = f"reverse+wss://{DMZ_INSIDE_IP}:{backplane}/shield/echo"
    dmz = NsGateway(DMZ, gateway_xml([service_xml(
        "proxy", f"ws://{DMZ_PUBLIC_IP}:{public}/echo", shield, name="public-echo",
        extra=ALLOW_INTERNAL)], pki.security(pki.dmz)), name="dmz")
    internal = NsGateway(TRUSTED, gateway_xml([service_xml(
        "echo", shield, name="internal-echo",
        extra=(f"<accept-options><http.proxy>http://{DMZ_INSIDE_IP}:{proxy_port}</http.proxy>"
               f"<http.proxy.credentials.file>{cred}</http.proxy.credentials.file>"
               "</accept-options>"))], pki.security(pki.internal)), name="internal")
    try:
        with dmz, internal:
            internal.wait_for(r"internal-echo: reverse connection prepared")
            # Control: the backplane listens, but the trusted host cannot reach it directly.
            direct = _in(TRUSTED, sys.executable, "-c",
                         "import socket; socket.create_connection"
                         f"(('{DMZ_INSIDE_IP}', {backplane}), timeout=3)", check=False)
            assert direct.returncode != 0 and "refused" in direct.stderr.lower(), direct
            # The DMZ saw the connection come from the proxy (on its own host).
            dmz.wait_for(rf"public-echo: reverse connection from {re.escape(DMZ_INSIDE_IP)}:\d+ "
                         r"\(certificate internal\.test\) prepared")
            code, outcome = client(INTERNET, "ws", f"ws://{DMZ_PUBLIC_IP}:{public}/echo")
            assert code == 0 and outcome["replies"] == ["message 0", "message 1",
                                                        "message 2"], outcome
            assert password not in internal.log()
    finally:
        for rule in blocked:
            _in(TRUSTED, "iptables", "-D", *rule[1:], check=False)


# -- Enterprise Shield on loopback: refusal and TLS checks ----------------------------------


def _close_frame(url: str, ca: str | None = None) -> tuple[int, bytes]:
    ws = websocket.create_connection(url, timeout=20, sslopt={"ca_certs": ca} if ca else None)
    frame = ws.recv_data_frame(True)[1]
    assert frame.opcode == websocket.ABNF.OPCODE_CLOSE, frame
    return int.from_bytes(frame.data[:2], "big"), frame.data[2:]


def test_shield_without_internal_gateway_refuses_after_the_timeout(pki: Pki) -> None:
    dmz, _, urls = _shield_pair(pki, dmz_ns=None, internal_ns=None)
    with dmz:
        started = time.monotonic()
        code, reason = _close_frame(urls["ws"])
        assert code == 1014 and b"no reverse connection" in reason, reason
        assert 4.5 <= time.monotonic() - started < 15
        dmz.wait_for(r"public-echo: .*no reverse connection from the internal gateway within 5s")


def _internal_only(pki: Pki, identity: tuple[str, str], shield: str, ca: str | None = None
                   ) -> GatewayProcess:
    return GatewayProcess(gateway_xml([service_xml(
        "echo", shield, name="internal-echo",
        extra="<accept-options><reverse.retry.maximum.interval>1sec"
              "</reverse.retry.maximum.interval></accept-options>")],
        pki.security(identity, ca)), name="internal")


@pytest.mark.parametrize("identity, dmz_says", [
    ("rogue", "untrusted client certificate"),
    ("expired", "expired client certificate"),
])
def test_shield_refuses_bad_client_certificates(pki: Pki, identity: str, dmz_says: str) -> None:
    dmz, _, urls = _shield_pair(pki, dmz_ns=None, internal_ns=None)
    with dmz, _internal_only(pki, getattr(pki, identity), urls["shield"]) as internal:
        dmz.wait_for(rf"TLS client 127\.0\.0\.1:\d+ refused by public-echo \(Enterprise Shield "
                     rf"backplane\).*: TLS refused: {dmz_says}")
        internal.wait_for(r"internal-echo: reverse connection to .* failed \(.*TLS.*\); retrying")
        assert "reverse connection prepared" not in internal.log()


def test_shield_backplane_requires_a_client_certificate(pki: Pki) -> None:
    dmz, _, urls = _shield_pair(pki, dmz_ns=None, internal_ns=None)
    backplane = urls["shield"].replace("reverse+wss", "wss")
    with dmz:
        with pytest.raises((ssl.SSLError, websocket.WebSocketException, ConnectionError)):
            ws = websocket.create_connection(backplane, timeout=10, subprotocols=[
                "kgateway-shield.v1"], sslopt={"ca_certs": pki.ca})
            ws.recv()
        dmz.wait_for(r"refused by public-echo \(Enterprise Shield backplane\).*: "
                     r"TLS refused: no client certificate")


def test_shield_internal_gateway_checks_the_dmz_hostname(pki: Pki) -> None:
    dmz, _, urls = _shield_pair(pki, dmz_ns=None, internal_ns=None, dmz_identity=pki.elsewhere)
    # A certificate from the right CA, but for another host.
    with dmz, _internal_only(pki, pki.internal, urls["shield"]) as internal:
        internal.wait_for(r"reverse connection to .* failed \(TLS hostname verification "
                          r"failed: certificate does not name 127\.0\.0\.1\)")


def test_shield_internal_gateway_refuses_an_untrusted_dmz(pki: Pki, tmp_path: object) -> None:
    dmz, _, urls = _shield_pair(pki, dmz_ns=None, internal_ns=None)
    rogue_ca = os.path.join(os.path.dirname(pki.rogue[0]), "ca.pem")
    with dmz, _internal_only(pki, pki.internal, urls["shield"], ca=rogue_ca) as internal:
        internal.wait_for(r"reverse connection to .* failed \(TLS certificate verification "
                          r"failed \(untrusted certificate\)\)")


def test_shield_on_loopback_serves_stream_clients_too(pki: Pki) -> None:
    """tcp accept on the DMZ side, reverse connection, echo inside: bytes both ways."""
    tcp = free_port()
    backplane = free_port()
    shield = f"reverse+wss://127.0.0.1:{backplane}/shield/tcp"
    dmz = GatewayProcess(gateway_xml([service_xml("proxy", f"tcp://127.0.0.1:{tcp}", shield,
                                                  name="public-tcp", extra=ALLOW_INTERNAL)],
                                     pki.security(pki.dmz)),
                         name="dmz")
    with dmz, _internal_only(pki, pki.internal, shield) as internal:
        internal.wait_for("reverse connection prepared")
        sock = socket.create_connection(("127.0.0.1", tcp), timeout=10)
        blob = os.urandom(512 * 1024)
        sock.sendall(blob)
        assert recv_exactly(sock, len(blob)) == blob
        sock.close()
        # The internal gateway counts the paired reverse connection as a client of its
        # service (health, metrics, drain) and logs it with the public client's address.
        internal.wait_for(r"access: service=internal-echo peer=127\.0\.0\.1:\d+ .*"
                          r"bytes_in=(\d{6,})")


def test_shield_backplane_refuses_internal_gateways_it_does_not_name(pki: Pki) -> None:
    backplane = free_port()
    shield = f"reverse+wss://127.0.0.1:{backplane}/shield/echo"
    dmz = GatewayProcess(gateway_xml([service_xml(
        "proxy", f"ws://127.0.0.1:{free_port()}/echo", shield, name="public-echo",
        extra="<connect-options><reverse.allowed.names>other-internal.test"
              "</reverse.allowed.names></connect-options>")], pki.security(pki.dmz)),
        name="dmz")
    with dmz, _internal_only(pki, pki.internal, shield) as internal:
        dmz.wait_for(r"public-echo: refusing reverse connection from 127\.0\.0\.1:\d+ "
                     r"\(certificate internal\.test\): certificate names 127\.0\.0\.1, "
                     r"internal\.test are not in reverse\.allowed\.names")
        internal.wait_for(r"internal-echo: reverse connection to .* failed \(WebSocket "
                          r"handshake failed")
        assert "prepared" not in dmz.log()


# -- TLS on ordinary accepts and connects ------------------------------------------------------


def test_verify_client_and_mutual_tls_between_gateways(pki: Pki) -> None:
    """B requires client certificates; A presents its own with ssl.present-certificate."""
    b_port, a_port, a_plain = free_port(), free_port(), free_port()
    b = GatewayProcess(gateway_xml([service_xml(
        "echo", f"wss://localhost:{b_port}/echo", name="mtls-echo",
        extra="<accept-options><ssl.verify-client>required</ssl.verify-client>"
              "</accept-options>")], pki.security(pki.dmz)), name="b")
    target = f"wss://localhost:{b_port}/echo"
    a = GatewayProcess(gateway_xml([
        service_xml("proxy", f"ws://127.0.0.1:{a_port}/p", target, name="with-cert",
                    extra="<connect-options><ssl.present-certificate>true"
                          "</ssl.present-certificate></connect-options>"),
        service_xml("proxy", f"ws://127.0.0.1:{a_plain}/p", target, name="without-cert"),
    ], pki.security(pki.internal)), name="a")
    with b, a:
        ws = websocket.create_connection(f"ws://127.0.0.1:{a_port}/p", timeout=10)
        ws.send("mutual")
        assert ws.recv() == "mutual"
        ws.close()
        # Without a client certificate B refuses, and says so.
        ws = websocket.create_connection(f"ws://127.0.0.1:{a_plain}/p", timeout=10)
        frame = ws.recv_data_frame(True)[1]
        assert frame.opcode == websocket.ABNF.OPCODE_CLOSE
        b.wait_for(r"refused by mtls-echo: TLS refused: no client certificate")
        a.wait_for(r"without-cert: .*cannot connect to wss://localhost")


@pytest.mark.parametrize("which, expected", [("rogue", b"untrusted certificate"),
                                             ("expired", b"expired certificate")])
def test_connect_refuses_untrusted_and_expired_servers(pki: Pki, which: str,
                                                       expected: bytes) -> None:
    b_port, a_port = free_port(), free_port()
    cert, key = getattr(pki, which)
    b = GatewayProcess(gateway_xml([service_xml("echo", f"ssl://127.0.0.1:{b_port}")],
                                   pki.security((cert, key))), name="b")
    a = GatewayProcess(gateway_xml([service_xml(
        "proxy", f"ws://127.0.0.1:{a_port}/p", f"ssl://127.0.0.1:{b_port}", name="px")],
        pki.security(pki.internal)), name="a")
    with b, a:
        code, reason = _close_frame(f"ws://127.0.0.1:{a_port}/p")
        assert code == 1014 and expected in reason, reason
        a.wait_for("px: .*cannot connect to ssl://127.0.0.1.*" + expected.decode())


def test_pkcs12_keystore_with_password_file_and_tls13_only(pki: Pki, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.serialization import pkcs12

    cert_pem, key_pem = pki.dmz
    with open(cert_pem, "rb") as f:
        chain = x509.load_pem_x509_certificates(f.read())
    with open(key_pem, "rb") as f:
        key = serialization.load_pem_private_key(f.read(), None)
    p12 = tmp_path / "keystore.p12"
    p12.write_bytes(pkcs12.serialize_key_and_certificates(
        b"gateway", key, chain[0], chain[1:],  # type: ignore[arg-type]
        serialization.BestAvailableEncryption(b"s3cret")))
    (tmp_path / "keystore.pw").write_text("s3cret\n")
    port = free_port()
    security = (f"<security><keystore><type>PKCS12</type><file>{p12}</file>"
                f"<password-file>{tmp_path / 'keystore.pw'}</password-file></keystore>"
                f"<truststore><file>{pki.ca}</file></truststore></security>")
    gw = GatewayProcess(gateway_xml([service_xml(
        "echo", f"ssl://localhost:{port}", name="p12",
        extra="<accept-options><ssl.protocols>TLSv1.3</ssl.protocols></accept-options>")],
        security), name="p12")
    with gw:
        context = ssl.create_default_context(cafile=pki.ca)
        with context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10),
                                 server_hostname="localhost") as sock:
            assert sock.version() == "TLSv1.3"
            sock.sendall(b"p12")
            assert recv_exactly(sock, 3) == b"p12"
        old = ssl.create_default_context(cafile=pki.ca)
        old.maximum_version = ssl.TLSVersion.TLSv1_2
        with pytest.raises((ssl.SSLError, ConnectionError)):
            old.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10),
                            server_hostname="localhost")
        gw.wait_for(r"refused by p12: TLS refused: no common protocol version")


# -- virtual private connection ---------------------------------------------------------------


def _vpc(pki: Pki, target: str, scheme: str = "tcp") -> tuple[GatewayProcess, GatewayProcess,
                                                                 int]:
    """Gateway A accepts *scheme*, carries it over wss to gateway B, which connects *target*."""
    a_port, b_port = free_port(), free_port()
    b = GatewayProcess(gateway_xml([service_xml(
        "proxy", f"wss://localhost:{b_port}/vpc", target, name="vpc-b",
        extra="<accept-options><ssl.verify-client>required</ssl.verify-client>"
              "</accept-options>")], pki.security(pki.dmz)), name="vpc-b")
    a = GatewayProcess(gateway_xml([service_xml(
        "proxy", f"{scheme}://127.0.0.1:{a_port}", f"wss://localhost:{b_port}/vpc",
        name="vpc-a", extra="<connect-options><ssl.present-certificate>true"
                            "</ssl.present-certificate></connect-options>")],
        pki.security(pki.internal)), name="vpc-a")
    return a, b, a_port


def _broker_up(script: str, port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return True
    except OSError:
        pass
    path = os.path.join(ROOT, "scripts", script)
    if not os.path.exists(path):
        return False
    result = subprocess.run([path, "start"], capture_output=True, text=True, timeout=180)
    return result.returncode == 0


def test_vpc_tcp_echo(pki: Pki) -> None:
    echo_port = free_port()
    echo = GatewayProcess(gateway_xml([service_xml("echo", f"tcp://127.0.0.1:{echo_port}")]),
                          name="tcp-echo")
    a, b, port = _vpc(pki, f"tcp://127.0.0.1:{echo_port}")
    with echo, b, a:
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        blob = os.urandom(1 << 20)
        sock.sendall(blob)
        assert recv_exactly(sock, len(blob)) == blob
        sock.close()


def test_vpc_pika_to_rabbitmq(pki: Pki) -> None:
    pika = pytest.importorskip("pika")
    if not _broker_up("rabbitmq.sh", 5672):
        pytest.skip("RabbitMQ is not running and scripts/rabbitmq.sh start failed")
    a, b, port = _vpc(pki, "tcp://127.0.0.1:5672")
    with b, a:
        params = pika.ConnectionParameters("127.0.0.1", port, socket_timeout=10,
                                           blocked_connection_timeout=10)
        connection = pika.BlockingConnection(params)
        channel = connection.channel()
        queue = channel.queue_declare("", exclusive=True).method.queue
        channel.basic_publish("", queue, b"through the private connection")
        method, _, body = next(channel.consume(queue, auto_ack=True, inactivity_timeout=10))
        assert body == b"through the private connection"
        connection.close()


def test_vpc_stomp_to_activemq(pki: Pki) -> None:
    stomp = pytest.importorskip("stomp")
    port_61613 = 61613
    if not _broker_up("activemq.sh", port_61613):
        pytest.skip("ActiveMQ is not running and scripts/activemq.sh start failed")
    a, b, port = _vpc(pki, f"tcp://127.0.0.1:{port_61613}")
    with b, a:
        received: list[str] = []
        import threading

        got = threading.Event()

        class Listener(stomp.ConnectionListener):  # type: ignore[misc]
            def on_message(self, frame):  # type: ignore[no-untyped-def]
                received.append(frame.body)
                got.set()

        conn = stomp.Connection([("127.0.0.1", port)], heartbeats=(0, 0))
        conn.set_listener("l", Listener())
        conn.connect("admin", "admin", wait=True)
        conn.subscribe("/queue/kgateway.vpc", id="1", ack="auto")
        conn.send("/queue/kgateway.vpc", "through the private connection")
        assert got.wait(10)
        assert received == ["through the private connection"]
        conn.disconnect()


def test_vpc_udp_one_datagram_per_message(pki: Pki) -> None:
    echo_port = free_port()
    echo = GatewayProcess(gateway_xml([service_xml("echo", f"udp://127.0.0.1:{echo_port}")]),
                          name="udp-echo")
    a, b, port = _vpc(pki, f"udp://127.0.0.1:{echo_port}", scheme="udp")
    with echo, b, a:
        clients = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
        for i, sock in enumerate(clients):
            sock.settimeout(10)
            sizes = [1, 1200, 8000]
            for size in sizes:
                datagram = bytes([i]) * size
                # The first datagram may arrive before the wss hop is up: it is held, not lost.
                sock.sendto(datagram, ("127.0.0.1", port))
                data, _ = sock.recvfrom(65536)
                assert data == datagram
            sock.close()


# -- amqp.proxy behind both topologies (pika at one end, RabbitMQ at the other) ---------------


def test_amqp_proxy_behind_dmz_chain_and_enterprise_shield(pki: Pki) -> None:
    pika = pytest.importorskip("pika")
    from kgateway.services import SERVICE_TYPES

    if "amqp.proxy" not in SERVICE_TYPES:
        pytest.skip("no amqp.proxy service type in this tree")
    if not _broker_up("rabbitmq.sh", 5672):
        pytest.skip("RabbitMQ is not running and scripts/rabbitmq.sh start failed")
    inside, backplane, forward, reverse = free_port(), free_port(), free_port(), free_port()
    shield = f"reverse+wss://127.0.0.1:{backplane}/shield/amqp"
    internal = GatewayProcess(gateway_xml([
        service_xml("amqp.proxy", f"wss://127.0.0.1:{inside}/amqp", "tcp://127.0.0.1:5672",
                    name="amqp-forward", extra="<accept-options><ssl.verify-client>required"
                                               "</ssl.verify-client></accept-options>"),
        service_xml("amqp.proxy", shield, "tcp://127.0.0.1:5672", name="amqp-shield"),
    ], pki.security(pki.internal)), name="internal")
    dmz = GatewayProcess(gateway_xml([
        service_xml("proxy", f"tcp://127.0.0.1:{forward}", f"wss://127.0.0.1:{inside}/amqp",
                    name="dmz-forward", extra="<connect-options><ssl.present-certificate>true"
                                              "</ssl.present-certificate></connect-options>"),
        service_xml("proxy", f"tcp://127.0.0.1:{reverse}", shield, name="dmz-shield",
                    extra=ALLOW_INTERNAL),
    ], pki.security(pki.dmz)), name="dmz")
    with dmz, internal:
        internal.wait_for("amqp-shield: reverse connection prepared")
        for port in (forward, reverse):
            try:
                connection = pika.BlockingConnection(pika.ConnectionParameters(
                    "127.0.0.1", port, socket_timeout=10, blocked_connection_timeout=10))
            except pika.exceptions.AMQPError as e:
                raise AssertionError(f"{e!r}\n--- dmz ---\n{dmz.log()}\n--- internal ---\n"
                                     f"{internal.log()}") from e
            channel = connection.channel()
            queue = channel.queue_declare("", exclusive=True).method.queue
            channel.basic_publish("", queue, f"via {port}".encode())
            _, _, body = next(channel.consume(queue, auto_ack=True, inactivity_timeout=10))
            assert body == f"via {port}".encode()
            connection.close()


def test_shield_passes_subprotocols_and_close_codes(pki: Pki) -> None:
    dmz, internal, urls = _shield_pair(pki, count=1, dmz_ns=None, internal_ns=None)
    with dmz, internal:
        internal.wait_for(r"internal-echo: reverse connection prepared")
        ws = websocket.create_connection(urls["ws"], timeout=10,
                                         subprotocols=["v12.stomp", "v11.stomp"])
        # The internal echo chose (the first offered); the DMZ client sees its choice.
        assert ws.getsubprotocol() == "v12.stomp"
        ws.send_binary(b"\x00\xff")
        assert ws.recv_data() == (websocket.ABNF.OPCODE_BINARY, b"\x00\xff")
        ws.close()


def test_jms_behind_dmz_chain_and_enterprise_shield(pki: Pki) -> None:
    """stomp.py over WebSocket -> DMZ proxy -> (wss | reverse+wss) -> internal jms -> ActiveMQ."""
    stomp = pytest.importorskip("stomp")
    import threading

    from kgateway.services import SERVICE_TYPES

    if "jms" not in SERVICE_TYPES:
        pytest.skip("no jms service type in this tree")
    if not _broker_up("activemq.sh", 61613):
        pytest.skip("ActiveMQ is not running and scripts/activemq.sh start failed")
    inside, backplane, public = free_port(), free_port(), free_port()
    shield = f"reverse+wss://127.0.0.1:{backplane}/shield/jms"
    internal = GatewayProcess(gateway_xml([
        service_xml("jms", [f"wss://127.0.0.1:{inside}/jms", shield],
                    "stomp://127.0.0.1:61613", name="jms",
                    extra="<accept-options><ssl.verify-client>required</ssl.verify-client>"
                          "</accept-options>"),
    ], pki.security(pki.internal)), name="internal")
    dmz = GatewayProcess(gateway_xml([
        service_xml("proxy", f"ws://127.0.0.1:{public}/jms", f"wss://127.0.0.1:{inside}/jms",
                    name="dmz-forward", extra="<connect-options><ssl.present-certificate>true"
                                              "</ssl.present-certificate></connect-options>"),
        service_xml("proxy", f"ws://127.0.0.1:{public}/jms-shield", shield, name="dmz-shield",
                    extra=ALLOW_INTERNAL),
    ], pki.security(pki.dmz)), name="dmz")
    with dmz, internal:
        internal.wait_for("jms: reverse connection prepared")
        class Listener(stomp.ConnectionListener):  # type: ignore[misc]
            def __init__(self) -> None:
                self.got = threading.Event()
                self.bodies: list[str] = []

            def on_message(self, frame):  # type: ignore[no-untyped-def]
                self.bodies.append(frame.body)
                self.got.set()

        for path in ("/jms", "/jms-shield"):
            listener = Listener()
            conn = stomp.WSStompConnection([("127.0.0.1", public)], ws_path=path, vhost="/",
                                           header={"Sec-WebSocket-Protocol": "v12.stomp"},
                                           reconnect_attempts_max=1)
            conn.set_listener("l", listener)
            conn.connect(wait=True)
            topic = f"/topic/kgateway.topology{path.replace('/', '.')}"
            conn.subscribe(topic, id="1", ack="auto", receipt="sub")
            # One connection's frames stay in order through both gateways and the broker, so
            # the SUBSCRIBE is in place before the SEND arrives.
            conn.send(topic, f"through {path}", receipt="sent")
            assert listener.got.wait(10), (dmz.log(), internal.log())
            assert listener.bodies == [f"through {path}"]
            conn.disconnect()
