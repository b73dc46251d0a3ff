"""Gateways in a pool behind a real HAProxy, and the gateway's own balancing.

    300 clients --> HAProxy (roundrobin, GET /health checks) --> gateway g1, g2, g3 (echo)

HAProxy is started by the tests from etc/examples/haproxy/*.cfg.in and reports its view of
the pool over syslog (tests/balancers.py): the tests wait for "g2 is DOWN", never sleep.
Client addresses are told apart by their loopback source (127.0.0.2 ... 127.0.0.5) so the
tests can check whose address the gateway logged.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import websocket

from kgateway.certs import make_certificate
from kgateway.protocols.proxy_protocol import build_v1, build_v2
from tests.balancers import (
    HAProxy,
    Nginx,
    PoolGateway,
    haproxy_available,
    nginx_available,
    servers,
)
from tests.helpers import (
    ROOT,
    GatewayProcess,
    free_port,
    gateway_xml,
    make_certs,
    recv_exactly,
    service_xml,
)

pytestmark = pytest.mark.skipif(not haproxy_available(),
                                reason="haproxy missing: apt-get install haproxy")

CLIENT = "127.0.0.2"  # the "real" client address, as opposed to HAProxy's 127.0.0.3


def health(port: int) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/health")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def echo_count(port: int) -> int:
    services = health(port)[1]["services"]
    return int(services["echo"]["connections"])  # type: ignore[index]


def pool_member(port: int, options: tuple[str, ...] = (), name: str = "g") -> PoolGateway:
    """A gateway as in etc/gateway.xml: echo and health on one port, the client's address
    taken from HAProxy's X-Forwarded-For (one hop)."""
    accept_options = ("<accept-options><http.forwarded.hops>1</http.forwarded.hops>"
                      "</accept-options>")
    config = gateway_xml([
        service_xml("echo", f"ws://127.0.0.1:{port}/echo", name="echo", extra=accept_options),
        service_xml("health", f"http://127.0.0.1:{port}/health", name="health"),
    ])
    return PoolGateway(config, options=options, name=name)


def ws_from(url: str, source: str = CLIENT, timeout: float = 10) -> websocket.WebSocket:
    """A WebSocket client whose TCP connection comes from *source* (a loopback address)."""
    host, port = url.split("/")[2].split(":")
    sock = socket.create_connection((host, int(port)), timeout=timeout,
                                    source_address=(source, 0))
    return websocket.create_connection(url, timeout=timeout, socket=sock)


@dataclass
class Pool:
    ports: list[int]
    gateways: list[PoolGateway]
    haproxy: HAProxy
    front: int
    clients: list[websocket.WebSocket] = field(default_factory=list)

    def url(self) -> str:
        return f"ws://127.0.0.1:{self.front}/echo"


@pytest.fixture(scope="module")
def pool() -> Iterator[Pool]:
    ports = [free_port() for _ in range(3)]
    gateways = [pool_member(p, ("--drain-grace", "2", "--drain-timeout", "1"), f"g{i}")
                for i, p in enumerate(ports, 1)]
    for gw in gateways:
        gw.start()
    front = free_port()
    haproxy = HAProxy("pool.cfg.in", bind=f"127.0.0.1:{front}", check_inter="200ms",
                      servers=servers(ports, "check source 127.0.0.3"),
                      extra="    option forwardfor").start()
    p = Pool(ports, gateways, haproxy, front)
    yield p
    for client in p.clients:
        client.close(timeout=1)
    haproxy.stop()
    for gw in gateways:
        gw.stop(signal.SIGKILL)


def test_300_clients_are_spread_evenly_and_echo_through_every_gateway(pool: Pool) -> None:
    for i in range(300):
        ws = ws_from(pool.url())
        ws.send(f"client {i}")
        assert ws.recv() == f"client {i}"
        pool.clients.append(ws)
    counts = [echo_count(port) for port in pool.ports]
    assert sum(counts) == 300
    assert all(abs(c - 100) <= 10 for c in counts), counts
    # The gateways logged the client's address from X-Forwarded-For, not HAProxy's.
    for ws in pool.clients[:3]:
        ws.close()
    pool.clients[:3] = []
    for gw in pool.gateways:
        gw.wait_for(rf"access: service=echo peer={CLIENT} ")


def test_a_killed_gateway_is_marked_down_and_new_clients_all_connect(pool: Pool) -> None:
    victim = pool.gateways[1]
    victim.stop(signal.SIGKILL)
    pool.haproxy.log.wait_for(r"gateways/g2 is DOWN")
    for i in range(60):
        ws = ws_from(pool.url())
        ws.send(f"after {i}")
        assert ws.recv() == f"after {i}"
        ws.close()


class EchoClient(threading.Thread):
    """Sends numbered messages, one at a time; an echo acknowledges one. A close (1001 from a
    draining gateway) makes it reconnect through HAProxy and resend what was not echoed."""

    def __init__(self, url: str, number: int, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.url, self.number, self.stop_event = url, number, stop
        self.acked: list[int] = []
        self.close_codes: list[int] = []
        self.connected = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            ws = ws_from(self.url)
            self.connected.set()
            n = 0
            while not self.stop_event.is_set() or not self.close_codes:
                ws.send(f"{self.number}:{n}")
                frame = ws.recv_data_frame(True)[1]
                if frame.opcode == websocket.ABNF.OPCODE_CLOSE:
                    self.close_codes.append(int.from_bytes(frame.data[:2], "big"))
                    ws = ws_from(self.url)  # message n was not echoed: it is sent again
                    continue
                assert frame.data.decode() == f"{self.number}:{n}"
                self.acked.append(n)
                n += 1
                if self.stop_event.is_set():
                    break
            ws.close()
        except BaseException as e:  # reported by the test
            self.error = e


def test_sigterm_drains_under_load_without_losing_messages(pool: Pool) -> None:
    """SIGTERM to g1 while 30 clients echo: 503 at once, HAProxy takes it out, its clients get
    1001 after the drain timeout and carry on through the others; no echo is lost or doubled."""
    for ws in pool.clients:
        ws.close(timeout=1)
    pool.clients.clear()
    g1, port = pool.gateways[0], pool.ports[0]
    stop = threading.Event()
    clients = [EchoClient(pool.url(), i, stop) for i in range(30)]
    for c in clients:
        c.start()
    for c in clients:
        assert c.connected.wait(10)
    on_g1 = echo_count(port)
    assert on_g1 > 0
    mark = g1.mark()
    g1.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
    g1.wait_for("draining: health reports 503", start=mark)
    code, body = health(port)
    assert code == 503 and body["status"] == "draining"
    # Still accepting during the grace period (the balancer may not have noticed yet).
    late = ws_from(f"ws://127.0.0.1:{port}/echo")
    late.send("late")
    assert late.recv() == "late"
    late.close()
    pool.haproxy.log.wait_for(r"gateways/g1 is DOWN")
    g1.wait_for(r"draining: time is up; closing \d+ connections with 1001", start=mark)
    assert g1.proc.wait(15) == -signal.SIGTERM  # type: ignore[union-attr]
    g1.wait_for("kgateway stopped", start=mark)
    reconnected = [c for c in clients if c.close_codes]
    assert len(reconnected) == on_g1
    assert all(c.close_codes == [1001] for c in reconnected)
    stop.set()
    for c in clients:
        c.join(20)
        assert c.error is None, c.error
        assert c.acked == list(range(len(c.acked))) and len(c.acked) > 0


def proxy_protocol_gateway() -> tuple[GatewayProcess, dict[str, int]]:
    ports = {k: free_port() for k in ("v1", "v2", "plain_ws", "plain_tcp")}

    def option(mode: str) -> str:
        return f"<accept-options><proxy.protocol>{mode}</proxy.protocol></accept-options>"

    config = gateway_xml([
        service_xml("echo", f"ws://127.0.0.1:{ports['v1']}/echo", name="echo-v1",
                    extra=option("v1")),
        service_xml("echo", f"tcp://127.0.0.1:{ports['v2']}", name="echo-v2",
                    extra=option("v2")),
        service_xml("echo", [f"ws://127.0.0.1:{ports['plain_ws']}/echo",
                             f"tcp://127.0.0.1:{ports['plain_tcp']}"], name="echo-plain"),
    ])
    return GatewayProcess(config, name="pp").start(), ports


def test_proxy_protocol_v1_and_v2_from_haproxy_log_the_client_address() -> None:
    gw, ports = proxy_protocol_gateway()
    front_v1, front_v2 = free_port(), free_port()
    with HAProxy("proxy-protocol.cfg.in", bind_v1=f"127.0.0.1:{front_v1}",
                 bind_v2=f"127.0.0.1:{front_v2}", server_v1=f"127.0.0.1:{ports['v1']}",
                 server_v2=f"127.0.0.1:{ports['v2']}", source="source 127.0.0.3"):
        ws = ws_from(f"ws://127.0.0.1:{front_v1}/echo")
        local_v1 = ws.sock.getsockname()[1]
        ws.send("through v1")
        assert ws.recv() == "through v1"
        ws.close()
        sock = socket.create_connection(("127.0.0.1", front_v2), timeout=10,
                                        source_address=(CLIENT, 0))
        local_v2 = sock.getsockname()[1]
        sock.sendall(b"through v2")
        assert recv_exactly(sock, 10) == b"through v2"
        sock.close()
        gw.wait_for(rf"access: service=echo-v1 peer={CLIENT}:{local_v1} .*bytes_in=\d+")
        gw.wait_for(rf"access: service=echo-v2 peer={CLIENT}:{local_v2} .*bytes_in=10 "
                    "bytes_out=10")
    assert "peer=127.0.0.3" not in gw.log()
    gw.stop()


def refused(sock: socket.socket) -> bool:
    """The gateway hung up without a byte (a reset, as it aborts with data unread)."""
    try:
        return sock.recv(100) == b""
    except ConnectionResetError:
        return True


@pytest.mark.parametrize("header", [build_v1(("6.6.6.6", 1234), ("127.0.0.1", 80)),
                                    build_v2(("6.6.6.6", 1234), ("127.0.0.1", 80))],
                         ids=["v1", "v2"])
def test_a_forged_proxy_header_is_refused_where_the_option_is_off(header: bytes) -> None:
    gw, ports = proxy_protocol_gateway()
    for kind in ("plain_ws", "plain_tcp"):
        sock = socket.create_connection(("127.0.0.1", ports[kind]), timeout=10)
        sock.sendall(header + b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
        assert refused(sock)  # closed without an answer or an echo
        sock.close()
    gw.wait_for(r"refusing 127.0.0.1:\d+ on http://127.0.0.1:\d+: PROXY header on an accept "
                "without proxy.protocol")
    gw.wait_for(r"refusing 127.0.0.1:\d+ on tcp://127.0.0.1:\d+: PROXY header")
    # A direct client without a header on a PROXY accept is refused too.
    sock = socket.create_connection(("127.0.0.1", ports["v1"]), timeout=10)
    sock.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
    assert refused(sock)
    # ... while honest clients are served as usual.
    ws = websocket.create_connection(f"ws://127.0.0.1:{ports['plain_ws']}/echo", timeout=10)
    ws.send("honest")
    assert ws.recv() == "honest"
    ws.close()
    assert "6.6.6.6" not in gw.log()
    gw.stop()


def test_two_workers_serve_the_same_port() -> None:
    port = free_port()
    gw = pool_member(port, ("--workers", "2", "--drain-grace", "0"), "workers")
    gw.start(wait_for=r"kgateway ready: 2 workers")
    seen: dict[int, int] = {}
    for _ in range(40):
        code, body = health(port)
        assert code == 200
        seen[int(body["pid"])] = int(body["worker"])  # type: ignore[call-overload]
    assert sorted(seen.values()) == [1, 2], seen
    ws = websocket.create_connection(f"ws://127.0.0.1:{port}/echo", timeout=10)
    ws.send("either")
    assert ws.recv() == "either"
    ws.close()
    assert gw.stop() == -signal.SIGTERM
    gw.wait_for(r"worker 1 ended")
    gw.wait_for(r"worker 2 ended")
    for pid in seen:
        assert not os.path.exists(f"/proc/{pid}") or _zombie(pid)


def test_workers_that_cannot_listen_make_the_supervisor_exit_1() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:  # no SO_REUSEPORT: not shareable
        port = taken.getsockname()[1]
        gw = PoolGateway(gateway_xml([service_xml("echo", f"tcp://127.0.0.1:{port}")]),
                         options=("--workers", "2"), name="noworkers")
        gw.start(wait_for="every worker has ended")
        assert gw.proc is not None and gw.proc.wait(20) == 1
        assert gw.log().count("address already in use") == 2


def _zombie(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(")")[-1].split()[0] == "Z"


class NamedBackend:
    """A TCP back end that greets each client with its name, then echoes; can go and return."""

    def __init__(self, name: bytes, port: int = 0) -> None:
        self.name = name
        self.server = socket.create_server(("127.0.0.1", port))
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._accept, args=(self.server,), daemon=True).start()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.sendall(self.name)
            while data := conn.recv(65536):
                conn.sendall(data)

    def stop(self) -> None:
        # shutdown() wakes the thread blocked in accept() and stops listening; close() alone
        # would leave the port accepting until that accept() returns.
        try:
            self.server.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.server.close()


def test_several_connect_targets_fail_over_and_come_back() -> None:
    a, b = NamedBackend(b"A"), NamedBackend(b"B")
    port = free_port()
    config = gateway_xml([service_xml(
        "proxy", f"tcp://127.0.0.1:{port}",
        [f"tcp://127.0.0.1:{a.port}", f"tcp://127.0.0.1:{b.port}"], name="relay",
        properties="<connect.strategy>round-robin</connect.strategy>"
                   "<connect.probe.interval>200ms</connect.probe.interval>")])

    def names(n: int) -> list[bytes]:
        got = []
        for _ in range(n):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            got.append(recv_exactly(sock, 1))
            sock.sendall(b"ping")
            assert recv_exactly(sock, 4) == b"ping"
            sock.close()
        return got

    with GatewayProcess(config, name="lb") as gw:
        assert sorted(names(4)) == [b"A", b"A", b"B", b"B"]
        b.stop()
        assert names(10) == [b"A"] * 10  # every client served, by A
        gw.wait_for(rf"relay: target tcp://127.0.0.1:{b.port} is down")
        mark = gw.mark()
        b = NamedBackend(b"B", b.port)
        gw.wait_for(rf"relay: target tcp://127.0.0.1:{b.port} is up", start=mark)
        assert sorted(names(4)) == [b"A", b"A", b"B", b"B"]
    a.stop()
    b.stop()


@pytest.mark.skipif(not nginx_available(), reason="nginx missing: apt-get install nginx-light")
def test_behind_nginx_clients_are_spread_and_survive_a_dead_gateway() -> None:
    """etc/examples/nginx: round robin, X-Forwarded-For, passive fail-over to live gateways."""
    ports = [free_port() for _ in range(3)]
    gateways = [pool_member(p, ("--drain-grace", "0"), f"n{i}").start()
                for i, p in enumerate(ports, 1)]
    front = free_port()
    nginx = Nginx(f"127.0.0.1:{front}", "\n".join(
        f"        server 127.0.0.1:{p} max_fails=1 fail_timeout=10s;" for p in ports)).start()
    try:
        clients = []
        for i in range(30):
            ws = ws_from(f"ws://127.0.0.1:{front}/echo")
            ws.send(f"n{i}")
            assert ws.recv() == f"n{i}"
            clients.append(ws)
        counts = [echo_count(p) for p in ports]
        # Each nginx worker process keeps its own round-robin position: nearly even.
        assert sum(counts) == 30 and all(7 <= c <= 13 for c in counts), counts
        for ws in clients:
            ws.close()
        for gw in gateways:
            gw.wait_for(rf"access: service=echo peer={CLIENT} ")
        gateways[0].stop(signal.SIGKILL)
        for i in range(12):  # nginx retries a refused connect on the next gateway
            ws = ws_from(f"ws://127.0.0.1:{front}/echo")
            ws.send(f"after {i}")
            assert ws.recv() == f"after {i}"
            ws.close()
    finally:
        nginx.stop()
        for gw in gateways:
            gw.stop(signal.SIGKILL)


class StompConsumer(threading.Thread):
    """A STOMP-over-WebSocket consumer through the balancer with client-individual acks.

    Every MESSAGE is recorded (body, redelivered) and acknowledged; when its gateway closes
    the connection (drain), it connects again through the balancer and subscribes again.
    """

    def __init__(self, port: int, queue_name: str, record: list[tuple[str, bool]],
                 changed: threading.Condition, done: threading.Event) -> None:
        super().__init__(daemon=True)
        self.port, self.queue_name = port, queue_name
        self.record, self.changed, self.done = record, changed, done
        self.wake = threading.Event()  # disconnected, or done
        self.reconnects = 0
        self.subscribed = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        import stomp

        outer = self

        class Listener(stomp.ConnectionListener):  # type: ignore[misc]
            def __init__(self, conn: Any) -> None:
                self.conn = conn

            def on_message(self, frame: Any) -> None:
                with outer.changed:
                    outer.record.append((frame.body, frame.headers.get("redelivered") == "true"))
                    outer.changed.notify_all()
                self.conn.ack(frame.headers["ack"])

            def on_disconnected(self) -> None:
                outer.wake.set()

        try:
            while not self.done.is_set():
                conn = stomp.WSStompConnection(
                    [("127.0.0.1", self.port)], ws_path="/jms", vhost="/",
                    header={"Sec-WebSocket-Protocol": "v12.stomp"}, reconnect_attempts_max=1)
                listener = Listener(conn)
                conn.set_listener("drain", listener)
                conn.connect(wait=True)
                conn.subscribe(self.queue_name, id="1", ack="client-individual")
                self.subscribed.set()
                self.wake.wait()
                if not self.done.is_set():
                    self.wake.clear()
                    self.reconnects += 1
                    continue
                conn.disconnect()
        except BaseException as e:  # reported by the test
            self.error = e


def test_sigterm_drain_with_stomp_client_ack_consumers_loses_nothing(activemq) -> None:  # type: ignore[no-untyped-def]
    """Issue 6's drain test: STOMP consumers on a queue with client acks, one gateway gets
    SIGTERM mid-stream; its consumers come back through HAProxy, and every message is
    received, the only duplicates being redeliveries."""
    import stomp

    pytest.importorskip("stomp")
    ports = [free_port() for _ in range(3)]
    gateways = []
    for i, port in enumerate(ports, 1):
        config = gateway_xml([
            service_xml("jms", f"ws://127.0.0.1:{port}/jms", f"stomp://{activemq[0]}:"
                        f"{activemq[1]}", name="jms",
                        properties="<queue.prefetch>10</queue.prefetch>"),
            service_xml("health", f"http://127.0.0.1:{port}/health", name="health")])
        gw = PoolGateway(config, options=("--drain-grace", "2", "--drain-timeout", "1"),
                         name=f"j{i}").start()
        gw.wait_for(r"connected to broker", 20)
        gateways.append(gw)
    front = free_port()
    queue_name = f"/queue/drain.{os.getpid()}.{front}"
    total = 600
    record: list[tuple[str, bool]] = []
    changed, done = threading.Condition(), threading.Event()
    with HAProxy("pool.cfg.in", bind=f"127.0.0.1:{front}", check_inter="200ms",
                 servers=servers(ports), extra="") as haproxy:
        consumers = [StompConsumer(front, queue_name, record, changed, done) for _ in range(9)]
        for c in consumers:
            c.start()
        for c in consumers:
            assert c.subscribed.wait(20)
        publisher = stomp.Connection([activemq])
        publisher.connect(wait=True)
        try:
            for n in range(total // 2):
                publisher.send(queue_name, str(n), headers={"persistent": "true"})
            mark = gateways[0].mark()
            gateways[0].proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
            gateways[0].wait_for("draining: health reports 503", start=mark)
            for n in range(total // 2, total):
                publisher.send(queue_name, str(n), headers={"persistent": "true"})
            haproxy.log.wait_for(r"gateways/g1 is DOWN")
            assert gateways[0].proc.wait(20) == -signal.SIGTERM  # type: ignore[union-attr]
            with changed:
                changed.wait_for(lambda: len({body for body, _ in record}) == total, 30)
        finally:
            done.set()
            publisher.disconnect()
            for c in consumers:
                c.wake.set()
                c.join(10)
            for gw in gateways:
                gw.stop(signal.SIGKILL)
    bodies = [body for body, _ in record]
    missing = set(map(str, range(total))) - set(bodies)
    assert not missing, f"lost: {sorted(missing, key=int)[:20]}"
    seen: set[str] = set()
    for body, redelivered in record:
        assert body not in seen or redelivered, f"{body} delivered twice, not as a redelivery"
        seen.add(body)
    assert any(c.reconnects for c in consumers)
    assert all(c.error is None for c in consumers), [c.error for c in consumers]


def test_the_proxy_header_comes_before_tls(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """ssl:// and wss:// accepts read the PROXY header first, then the TLS handshake."""
    import ssl

    certs = make_certs(str(tmp_path))
    tls_port, wss_port = free_port(), free_port()
    option = "<accept-options><proxy.protocol>any</proxy.protocol></accept-options>"
    config = gateway_xml([
        service_xml("echo", f"ssl://127.0.0.1:{tls_port}", name="echo-ssl", extra=option),
        service_xml("echo", f"wss://127.0.0.1:{wss_port}/echo", name="echo-wss", extra=option),
    ], certs.security_xml())
    context = ssl.create_default_context(cafile=certs.ca)
    with GatewayProcess(config, name="pptls") as gw:
        raw = socket.create_connection(("127.0.0.1", tls_port), timeout=10)
        raw.sendall(build_v2(("198.51.100.7", 40001), ("127.0.0.1", tls_port)))
        sock = context.wrap_socket(raw, server_hostname="localhost")
        sock.sendall(b"secret")
        assert recv_exactly(sock, 6) == b"secret"
        sock.close()
        raw = socket.create_connection(("127.0.0.1", wss_port), timeout=10)
        raw.sendall(build_v1(("198.51.100.8", 40002), ("127.0.0.1", wss_port)))
        ws = websocket.create_connection(f"wss://127.0.0.1:{wss_port}/echo", timeout=10,
                                         socket=context.wrap_socket(
                                             raw, server_hostname="localhost"))
        ws.send("over wss")
        assert ws.recv() == "over wss"
        ws.close()
        gw.wait_for(r"access: service=echo-ssl peer=198.51.100.7:40001 ")
        gw.wait_for(r"access: service=echo-wss peer=198.51.100.8:40002 ")


def test_workers_refuse_the_shield_dmz_side_with_the_reason(tmp_path: Path) -> None:
    make_certificate(str(tmp_path), "dmz.example.com", [])
    dmz = os.path.join(ROOT, "etc", "examples", "enterprise-shield", "dmz.xml")
    backplane = f"reverse+wss://127.0.0.1:{free_port()}/shield"
    gw = GatewayProcess(dmz, defines=[f"certs={tmp_path}", "dmz.hostname=127.0.0.1",
                                      f"public.port={free_port()}", f"backplane={backplane}"],
                        args=["--workers", "2"], name="shield-workers")
    gw.start(wait_for=None)
    assert gw.proc is not None and gw.proc.wait(30) != 0
    gw.wait_for(r"--workers cannot run the DMZ side of Enterprise Shield "
                r"\(reverse\+wss://127\.0\.0\.1:\d+/shield/echo\)")
    assert "kgateway ready" not in gw.log()
