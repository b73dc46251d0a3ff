"""Operating a real gateway: reload on SIGHUP, systemd's notify socket, SIGINT, the logs.

Every gateway is a real ``twistd`` process, awaited by its log lines; the systemd side is a
unix datagram socket bound by the test, named to the gateway by $NOTIFY_SOCKET as systemd
does, and read with blocking receives under a timeout.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
import websocket

from tests.helpers import (
    BIN,
    TWISTD,
    GatewayProcess,
    connect_tcp,
    free_port,
    gateway_xml,
    recv_exactly,
    service_xml,
)


def http(url: str, method: str = "GET") -> tuple[int, bytes]:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def ws_echo(ws: websocket.WebSocket, text: str) -> str:
    ws.send(text)
    return str(ws.recv())


def rewrite(gw: GatewayProcess, text: str) -> None:
    with open(gw.config, "w") as f:
        f.write(text)


def reload(gw: GatewayProcess, expect: str) -> None:
    """SIGHUP, then wait for *expect* among the lines logged after it."""
    mark = gw.mark()
    os.kill(gw.pid, signal.SIGHUP)
    gw.wait_for(expect, start=mark)


# -- reload ------------------------------------------------------------------------------


@pytest.fixture
def ports() -> tuple[int, int]:
    return free_port(), free_port()


def _config(web_port: int, tcp_port: int | None = None, extra_ws: bool = False,
            health: bool = True) -> str:
    services = [service_xml("echo", f"ws://127.0.0.1:{web_port}/echo", name="echo")]
    if health:
        services.append(service_xml("health", f"http://127.0.0.1:{web_port}/health",
                                    name="health"))
    if extra_ws:
        services.append(service_xml("echo", f"ws://127.0.0.1:{web_port}/echo2", name="echo2"))
    if tcp_port is not None:
        services.append(service_xml("echo", f"tcp://127.0.0.1:{tcp_port}", name="tcp-echo"))
    return gateway_xml(services)


def test_a_websocket_stays_open_across_a_reload_that_adds_services(
        ports: tuple[int, int]) -> None:
    web, tcp = ports
    with GatewayProcess(_config(web), args=["--drain-grace", "0"], name="reload-add") as gw:
        ws = websocket.create_connection(f"ws://127.0.0.1:{web}/echo", timeout=10)
        assert ws_echo(ws, "before") == "before"
        assert http(f"http://127.0.0.1:{web}/echo2")[0] == 404
        rewrite(gw, _config(web, tcp, extra_ws=True))
        reload(gw, r"reload: .* applied: 2 \(echo2, tcp-echo\) added, 0 changed, 0 removed, "
                   r"2 unchanged")
        # the open WebSocket was not touched; the new services accept at once
        assert ws_echo(ws, "after") == "after"
        ws2 = websocket.create_connection(f"ws://127.0.0.1:{web}/echo2", timeout=10)
        assert ws_echo(ws2, "new") == "new"
        with connect_tcp(tcp) as sock:
            sock.sendall(b"bytes")
            assert recv_exactly(sock, 5) == b"bytes"
        ws.close()
        ws2.close()
        assert "Received SIGHUP" not in gw.log() and gw.proc is not None \
            and gw.proc.poll() is None


def test_an_invalid_file_is_refused_and_the_running_configuration_keeps_serving(
        ports: tuple[int, int]) -> None:
    web, _ = ports
    with GatewayProcess(_config(web), args=["--drain-grace", "0"], name="reload-bad") as gw:
        good = open(gw.config).read()
        rewrite(gw, good.replace("<type>echo</type>", "<type>nosuch</type>", 1)
                .replace("/health</accept>", "/health</accept><connect>tcp://x:1</connect>"))
        mark = gw.mark()
        os.kill(gw.pid, signal.SIGHUP)
        gw.wait_for(r"reload refused: \d+ problem\(s\) in .*the running configuration stays",
                    start=mark)
        problems = [line for line in gw.lines[mark:] if "reload refused: " in line
                    and "gateway.xml:" in line]
        assert len(problems) >= 2, gw.log()  # every problem, each with file:line
        ws = websocket.create_connection(f"ws://127.0.0.1:{web}/echo", timeout=10)
        assert ws_echo(ws, "still") == "still"
        ws.close()
        assert http(f"http://127.0.0.1:{web}/health")[0] == 200


def test_a_removed_service_stops_accepting_and_the_others_go_on(
        ports: tuple[int, int]) -> None:
    web, tcp = ports
    with GatewayProcess(_config(web, tcp, extra_ws=True), args=["--drain-grace", "0"],
                        name="reload-remove") as gw:
        kept = websocket.create_connection(f"ws://127.0.0.1:{web}/echo", timeout=10)
        removed = websocket.create_connection(f"ws://127.0.0.1:{web}/echo2", timeout=10)
        assert ws_echo(removed, "x") == "x"
        rewrite(gw, _config(web))
        reload(gw, r"reload: .* applied: 0 added, 0 changed, 2 \(echo2, tcp-echo\) removed")
        gw.wait_for(r"stopped listening on tcp://127\.0\.0\.1:\d+ for tcp-echo")
        # the removed WebSocket service: its client is told 1001, its path is gone
        removed.settimeout(10)
        opcode, frame = removed.recv_data_frame(True)
        assert opcode == websocket.ABNF.OPCODE_CLOSE
        assert int.from_bytes(frame.data[:2], "big") == 1001
        assert http(f"http://127.0.0.1:{web}/echo2")[0] == 404
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", tcp), timeout=10).close()
        assert ws_echo(kept, "kept") == "kept"
        kept.close()


def test_certificates_renewed_in_place_are_read_again_on_reload(tmp_path: object) -> None:
    import ssl

    from cryptography import x509

    from kgateway.certs import make_certificate

    folder = str(tmp_path)
    cert, key = make_certificate(folder, "localhost", ["127.0.0.1"])
    port = free_port()
    config = gateway_xml([service_xml("echo", f"ssl://127.0.0.1:{port}", name="tls-echo")],
                         security=f"<security><keystore><certificate-file>{cert}"
                         f"</certificate-file><key-file>{key}</key-file></keystore>"
                         "</security>")

    def serial() -> int:
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
                ctx.wrap_socket(raw) as sock:
            sock.sendall(b"x")
            assert sock.recv(1) == b"x"
            der = sock.getpeercert(binary_form=True)
        assert der is not None
        return int(x509.load_der_x509_certificate(der).serial_number)

    with GatewayProcess(config, name="reload-tls") as gw:
        before = serial()
        assert make_certificate(folder, "localhost", ["127.0.0.1"]) == (cert, key)  # renewed
        reload(gw, r"reload: .* applied: 0 added, 0 changed, 0 removed, 1 unchanged")
        assert serial() != before


# -- systemd -----------------------------------------------------------------------------


@pytest.fixture(params=["path", "abstract"])
def notify_socket(request: pytest.FixtureRequest, tmp_path: object) -> Iterator[
        tuple[socket.socket, str]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if request.param == "path":
        path = os.path.join(str(tmp_path), "notify")
        sock.bind(path)
        name = path
    else:
        name = f"@kgateway-test-{os.getpid()}-{free_port()}"
        sock.bind(b"\0" + name[1:].encode())
    sock.settimeout(20)
    yield sock, name
    sock.close()


def messages_until(sock: socket.socket, field: str) -> list[dict[str, str]]:
    """Datagrams received until one carries *field* (``READY=1``); each as a dict."""
    seen = []
    while True:
        data = sock.recv(4096).decode()
        message = dict(line.split("=", 1) for line in data.split("\n") if "=" in line)
        seen.append(message)
        key, _, value = field.partition("=")
        if message.get(key) == value:
            return seen


def test_systemd_hears_ready_reloading_stopping_and_the_watchdog(
        notify_socket: tuple[socket.socket, str]) -> None:
    sock, name = notify_socket
    port = free_port()
    gw = GatewayProcess(_config(port), args=["--drain-grace", "0"], name="notify",
                        env={"NOTIFY_SOCKET": name, "WATCHDOG_USEC": "400000"})
    gw.start(wait_for=None)
    try:
        ready = messages_until(sock, "READY=1")[-1]
        assert ready["MAINPID"] == str(gw.pid) and "serving 2 services" in ready["STATUS"]
        # READY=1 comes after every listener is bound: the port answers now
        assert http(f"http://127.0.0.1:{port}/health")[0] == 200
        messages_until(sock, "WATCHDOG=1")  # every 0.2 s: half of WATCHDOG_USEC
        os.kill(gw.pid, signal.SIGHUP)
        assert "MONOTONIC_USEC" in messages_until(sock, "RELOADING=1")[-1]
        messages_until(sock, "READY=1")
        gw.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        stopping = messages_until(sock, "STOPPING=1")[-1]
        assert stopping["STATUS"].startswith("draining")
    finally:
        gw.stop()


def test_with_workers_the_supervisor_says_ready_once_all_are_and_forwards_sighup(
        tmp_path: object) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = os.path.join(str(tmp_path), "notify")
    sock.bind(path)
    sock.settimeout(30)
    port = free_port()
    gw = GatewayProcess(_config(port), args=["--workers", "2", "--drain-grace", "0"],
                        name="notify-workers", env={"NOTIFY_SOCKET": path})
    gw.start(wait_for=None)
    try:
        ready = messages_until(sock, "READY=1")
        assert ready[-1]["MAINPID"] == str(gw.pid)
        gw.wait_for(r"kgateway ready: 2 workers")
        mark = gw.mark()
        os.kill(gw.pid, signal.SIGHUP)  # forwarded: each worker reloads
        gw.wait_for(r"reload: .* applied: .* unchanged \(worker 1\)", start=mark)
        gw.wait_for(r"reload: .* applied: .* unchanged \(worker 2\)", start=mark)
        sock.settimeout(0.5)
        with pytest.raises(TimeoutError):  # workers never talk to systemd themselves
            sock.recv(4096)
    finally:
        gw.stop()
        sock.close()


# -- signals -----------------------------------------------------------------------------


def test_sigint_stops_at_once_without_the_drain_grace() -> None:
    port = free_port()
    # a health service: SIGTERM would wait its 5 s drain grace
    with GatewayProcess(_config(port), name="sigint") as gw:
        ws = websocket.create_connection(f"ws://127.0.0.1:{port}/echo", timeout=10)
        started = time.monotonic()
        code = gw.stop(signal.SIGINT, timeout=15)
        took = time.monotonic() - started
        assert code == -signal.SIGINT, gw.log()
        assert took < 3.0, f"{took:.1f}s\n{gw.log()}"
        assert "draining: health reports 503" not in gw.log()
        gw.wait_for(r"interrupted \(SIGINT\): stopping now")
        ws.close()


def test_a_second_signal_while_draining_is_noted_not_a_traceback() -> None:
    port = free_port()
    # a health service: SIGTERM drains with its 5 s grace, time for a second signal
    with GatewayProcess(_config(port), name="twice") as gw:
        gw.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        gw.wait_for(r"draining: health reports 503")
        gw.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        gw.wait_for(r"SIGTERM while stopping: already stopping")
        assert gw.stop(timeout=15) == -signal.SIGTERM, gw.log()  # twistd re-raises it
        gw.wait_for(r"Server Shut Down")
        assert "ReactorNotRunning" not in gw.log()


# -- logs --------------------------------------------------------------------------------


def test_logs_an_operator_can_use(ports: tuple[int, int]) -> None:
    web, backend_port = ports
    services = [
        service_xml("echo", f"tcp://127.0.0.1:{backend_port}", name="backend"),
        service_xml("proxy", f"ws://127.0.0.1:{web}/proxy", f"tcp://127.0.0.1:{backend_port}",
                    name="proxy"),
        service_xml("health", f"http://127.0.0.1:{web}/health", name="health"),
    ]
    with GatewayProcess(gateway_xml(services), args=["--drain-grace", "0"],
                        name="logs") as gw:
        assert http(f"http://127.0.0.1:{web}/health", "HEAD")[0] == 200
        gw.wait_for(r"http: service=health peer=127\.0\.0\.1:\d+ method=HEAD path=/health "
                    r"status=200 ")
        ws = websocket.create_connection(f"ws://127.0.0.1:{web}/proxy", timeout=10)
        ws.send_binary(b"abc")
        assert ws.recv() == b"abc"
        ws.close()
        gw.wait_for(r"access: service=proxy peer=127\.0\.0\.1:\d+ "
                    rf"target=tcp://127\.0\.0\.1:{backend_port} .* end=close=1000$")
        gw.wait_for(r"access: service=backend peer=127\.0\.0\.1:\d+ target=- .* end=eof$")
        text = gw.log()
        assert "Starting factory" not in text and "Stopping factory" not in text
        assert "HEAD request" not in text and "fake a HEAD" not in text
        assert "non-clean fashion" not in text


def test_a_wrong_broker_password_is_logged_with_the_broker_s_reason(rabbitmq) -> None:  # type: ignore[no-untyped-def]
    import pika

    host, broker_port = rabbitmq
    web = free_port()
    services = [service_xml("amqp.proxy", f"ws://127.0.0.1:{web}/amqp",
                            f"tcp://{host}:{broker_port}", name="amqp")]
    with GatewayProcess(gateway_xml(services), args=["--drain-grace", "0"],
                        name="amqp-refused") as gw:
        params = pika.URLParameters(f"amqp://guest:wrong@127.0.0.1:{broker_port}/")
        with pytest.raises(pika.exceptions.ProbableAuthenticationError):
            pika.BlockingConnection(params)  # the broker itself, for comparison
        ws = websocket.create_connection(f"ws://127.0.0.1:{web}/amqp", timeout=10,
                                          subprotocols=["amqp"])
        ws.send_binary(b"AMQP\x00\x00\x09\x01")
        ws.recv()  # Connection.Start
        from kgateway.protocols import amqp as A

        start_ok = A.ConnectionStartOk({}, "PLAIN", b"\x00guest\x00wrong", "en_US")
        ws.send_binary(A.method_frame(0, start_ok))
        gw.wait_for(r"amqp: 127\.0\.0\.1:\d+: broker refused the connection: 403 "
                    r"ACCESS_REFUSED")
        ws.close()
        gw.wait_for(r"access: service=amqp .* target=tcp://")
        assert "non-clean" not in gw.log()


def test_log_format_json_has_the_same_fields() -> None:
    port = free_port()
    gw = GatewayProcess(_config(port), args=["--drain-grace", "0", "--log-format", "json"],
                        name="json")
    gw.start(wait_for=r'"kgateway ready')
    try:
        ws = websocket.create_connection(f"ws://127.0.0.1:{port}/echo", timeout=10)
        assert ws_echo(ws, "j") == "j"
        ws.close()
        line = gw.wait_for(r'^\x1e?\{.*"log_kind": "access"').string
        event = json.loads(line.lstrip("\x1e"))
        assert event["service"] == "echo" and event["end"] == "close=1000"
        assert event["peer"].startswith("127.0.0.1:") and event["target"] == "-"
        assert event["received"] > 0 and event["sent"] > 0 and event["duration"] >= 0
    finally:
        gw.stop()


# -- errors ------------------------------------------------------------------------------


def test_a_config_error_prints_first_and_alone(tmp_path: object) -> None:
    path = os.path.join(str(tmp_path), "bad.xml")
    with open(path, "w") as f:
        f.write(gateway_xml([service_xml("echo", [])]))
    for command in ([TWISTD, "-n", "--pidfile=", "kgateway", "-c", path],
                    [os.path.join(BIN, "kgateway"), "run", path]):
        out = subprocess.run(command, capture_output=True, text=True, timeout=60,
                             cwd=str(tmp_path))
        assert out.returncode == 1
        text = (out.stdout + out.stderr).strip()
        assert text.splitlines()[0] == "kgateway: invalid configuration:", text
        assert "has no <accept>" in text and "Usage" not in text and "--help" not in text
        assert len(text.splitlines()) == 3, text
