"""Enterprise Shield high availability, with real twistd gateways on loopback:

    clients --ws--> DMZ gateway --backplane /shield/echo--+== internal gateway A (echo)
                                                          +== internal gateway B (echo)

Both internal gateways keep reverse connections prepared on the same DMZ path. A is killed
(SIGKILL, no drain); every client after that is still served, by B.
"""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import websocket

from kgateway.certs import make_certificate
from tests.helpers import GatewayProcess, free_port, gateway_xml, service_xml


def _security(identity: tuple[str, str], ca: str) -> str:
    return (f"<security><keystore><certificate-file>{identity[0]}</certificate-file>"
            f"<key-file>{identity[1]}</key-file></keystore>"
            f"<truststore><file>{ca}</file></truststore></security>")


def _echo(url: str, text: str) -> str:
    ws = websocket.create_connection(url, timeout=15)
    try:
        ws.send(text)
        return str(ws.recv())
    finally:
        ws.close()


def _count(gw: GatewayProcess, pattern: str, wanted: int, start: int) -> int:
    """How many log lines from *start* on match *pattern*, waiting until *wanted* do (access
    lines are written when the gateway sees the connection end, after the client's close)."""
    while True:
        mark = gw.mark()
        found = sum(1 for line in gw.log().split("\n")[start:mark] if re.search(pattern, line))
        if found >= wanted:
            return found
        gw.wait_for(pattern, start=mark)


def test_two_internal_gateways_on_one_path_survive_the_loss_of_one(tmp_path: Path) -> None:
    folder = str(tmp_path)
    dmz_id = make_certificate(folder, "dmz.test", ["localhost", "127.0.0.1"])
    internal_id = make_certificate(folder, "internal.test", ["127.0.0.1"])
    ca = os.path.join(folder, "ca.pem")
    public = f"ws://127.0.0.1:{free_port()}/echo"
    shield = f"reverse+wss://127.0.0.1:{free_port()}/shield/echo"
    dmz = GatewayProcess(gateway_xml([service_xml(
        "proxy", public, shield, name="public-echo",
        extra="<connect-options><reverse.timeout>10sec</reverse.timeout>"
              "<reverse.allowed.names>internal.test</reverse.allowed.names>"
              "</connect-options>")], _security(dmz_id, ca)), name="dmz")

    def internal(name: str) -> GatewayProcess:
        return GatewayProcess(gateway_xml([service_xml(
            "echo", shield, name=f"echo-{name}",
            extra="<accept-options><reverse.prepared.connection.count>3"
                  "</reverse.prepared.connection.count>"
                  "<reverse.retry.initial.interval>100ms</reverse.retry.initial.interval>"
                  "<reverse.retry.maximum.interval>1sec</reverse.retry.maximum.interval>"
                  "</accept-options>")], _security(internal_id, ca)), name=name)

    a, b = internal("a"), internal("b")
    with dmz, a, b:
        a.wait_for(r"echo-a: reverse connection prepared .*\(3/3\)")
        b.wait_for(r"echo-b: reverse connection prepared .*\(3/3\)")
        # The DMZ pairs clients with whichever prepared connection is oldest: both serve.
        for i in range(8):
            assert _echo(public, f"before {i}") == f"before {i}"
        served_before = {name: len(re.findall(r"access: service=echo-" + name, gw.log()))
                         for name, gw in (("a", a), ("b", b))}
        assert served_before["a"] and served_before["b"], served_before

        mark = b.mark()
        a.stop(signal.SIGKILL)  # no drain, no goodbye: its sockets just close
        for i in range(12):
            assert _echo(public, f"after {i}") == f"after {i}"
        assert _count(b, r"access: service=echo-b ", 12, start=mark) == 12
        # B keeps its pool full for the DMZ: every used connection was replaced.
        b.wait_for(r"echo-b: reverse connection prepared .*\(3/3\)", start=mark)
