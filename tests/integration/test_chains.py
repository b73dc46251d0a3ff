"""Close codes across chains of real twistd gateways.

    test client --ws--> A --wss--> B --tcp--> (nothing listens)            two gateways
    test client --ws--> A --wss--> B --ws--> C --tcp--> (nothing listens)  three gateways

The innermost gateway cannot reach its back end and closes with 1014 "cannot connect to
..."; every gateway in between relays that code and reason, so the client reads exactly
what the innermost one said. Likewise a 1009 from the innermost gateway (a message over
its ws.maximum.message.size) reaches the client as 1009.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import websocket

from tests.helpers import Certs, GatewayProcess, free_port, gateway_xml, make_certs, service_xml


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(str(tmp_path_factory.mktemp("certs")))


def _chain(length: int, innermost: str, certs: Certs,
           inner_options: str = "") -> Iterator[tuple[str, list[GatewayProcess]]]:
    """Start *length* proxy gateways, outermost first; the innermost connects to
    *innermost*. Hops alternate wss and ws. Yields the outer ws:// URL and the gateways."""
    urls = []
    for i in range(length):
        scheme = "ws" if i % 2 == 0 else "wss"
        urls.append(f"{scheme}://localhost:{free_port()}/hop{i}")
    gateways = []
    try:
        for i in reversed(range(length)):  # innermost first: each one's back end is up
            target = innermost if i == length - 1 else urls[i + 1]
            gateways.append(GatewayProcess(gateway_xml(
                [service_xml("proxy", urls[i], target, name=f"hop{i}",
                             extra=inner_options if i == length - 1 else "")],
                certs.security_xml()), name=f"hop{i}").start())
        yield urls[0], gateways
    finally:
        for gw in gateways:
            gw.stop()


def _close_frame(client: websocket.WebSocket) -> tuple[int, str]:
    frame = client.recv_data_frame(True)[1]
    assert frame.opcode == websocket.ABNF.OPCODE_CLOSE
    return int.from_bytes(frame.data[:2], "big"), frame.data[2:].decode()


@pytest.mark.parametrize("length", [2, 3])
def test_bad_gateway_from_the_innermost_gateway_reaches_the_client(length: int,
                                                                   certs: Certs) -> None:
    dead = f"tcp://127.0.0.1:{free_port()}"
    for outer, gateways in _chain(length, dead, certs):
        client = websocket.create_connection(outer, timeout=15)
        code, reason = _close_frame(client)
        innermost = gateways[0]
        logged = innermost.wait_for(r"hop\d: .*(cannot connect to tcp://\S+: .*)").group(1)
        assert code == 1014
        assert reason.startswith(f"cannot connect to {dead}")
        assert logged.startswith(reason.rstrip("."))  # the same words, maybe truncated
        # No hop between gateways saw a protocol error (1002) on the way.
        for gw in gateways:
            assert "close 1002" not in gw.log(), gw.log()


@pytest.mark.parametrize("length", [2, 3])
def test_message_too_big_at_the_innermost_gateway_reaches_the_client(length: int,
                                                                     certs: Certs) -> None:
    echo = f"ws://localhost:{free_port()}/echo"
    backend = GatewayProcess(gateway_xml([service_xml("echo", echo, name="echo")]),
                             name="echo").start()
    options = ("<accept-options><ws.maximum.message.size>1k</ws.maximum.message.size>"
               "</accept-options>")
    try:
        for outer, _ in _chain(length, echo, certs, options):
            client = websocket.create_connection(outer, timeout=15)
            client.send_binary(b"a" * 1024)
            assert client.recv() == b"a" * 1024
            client.send_binary(b"b" * 1025)
            code, _reason = _close_frame(client)
            assert code == 1009
    finally:
        backend.stop()



def test_bad_gateway_crosses_an_enterprise_shield_hop(tmp_path_factory: pytest.TempPathFactory,
                                                      ) -> None:
    """client --ws--> DMZ proxy --reverse+wss--> internal proxy --tcp--> (nothing)."""
    import os

    from kgateway.certs import make_certificate

    folder = str(tmp_path_factory.mktemp("shield-certs"))
    dmz_id = make_certificate(folder, "dmz.test", ["localhost", "127.0.0.1"])
    internal_id = make_certificate(folder, "internal.test", ["127.0.0.1"])
    ca = os.path.join(folder, "ca.pem")

    def security(identity: tuple[str, str]) -> str:
        return (f"<security><keystore><certificate-file>{identity[0]}</certificate-file>"
                f"<key-file>{identity[1]}</key-file></keystore>"
                f"<truststore><file>{ca}</file></truststore></security>")

    public = f"ws://127.0.0.1:{free_port()}/p"
    shield = f"reverse+wss://127.0.0.1:{free_port()}/shield/p"
    dead = f"tcp://127.0.0.1:{free_port()}"
    dmz = GatewayProcess(gateway_xml([service_xml(
        "proxy", public, shield, name="dmz",
        extra="<connect-options><reverse.allowed.names>internal.test"
              "</reverse.allowed.names></connect-options>")], security(dmz_id)), name="dmz")
    internal = GatewayProcess(gateway_xml([service_xml("proxy", shield, dead, name="inside")],
                                          security(internal_id)), name="internal")
    with dmz, internal:
        internal.wait_for(r"inside: reverse connection prepared")
        client = websocket.create_connection(public, timeout=15)
        code, reason = _close_frame(client)
        assert code == 1014 and reason.startswith(f"cannot connect to {dead}"), (code, reason)
