"""The log of a real ``twistd -n kgateway`` (kgateway.logobserver): twistd's line format, every
line on stdout while the gateway is otherwise idle, and every line of a stop, with stdout
unbuffered (as systemd and the tests run it) or buffered (a plain pipe)."""

from __future__ import annotations

import json
import re
import signal

import pytest
import websocket

from tests.helpers import GatewayProcess, free_port, gateway_xml, service_xml


def access(peer: int, end: str) -> str:
    """twistd's text line for a WebSocket's access line (a regex), as kgateway wrote it before."""
    return (r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} \[kgateway\.transport\.tracker#info\] "
            rf"access: service=echo peer=127\.0\.0\.1:{peer} target=- duration=\d+\.\d{{3}}s "
            rf"bytes_in=\d+ bytes_out=\d+ end={end}$")

BUFFERING = pytest.mark.parametrize("unbuffered", ["1", ""], ids=["unbuffered", "buffered"])


def _gateway(port: int, unbuffered: str, *args: str) -> GatewayProcess:
    return GatewayProcess(gateway_xml([service_xml("echo", f"ws://127.0.0.1:{port}/echo",
                                                      name="echo")]),
                          args=["--drain-grace", "0", *args], name="loglines",
                          env={"PYTHONUNBUFFERED": unbuffered})


def _clients(port: int, n: int) -> list[websocket.WebSocket]:
    clients = []
    for i in range(n):
        ws = websocket.create_connection(f"ws://127.0.0.1:{port}/echo", timeout=10)
        ws.send(f"hello {i}")
        assert ws.recv() == f"hello {i}"
        clients.append(ws)
    return clients


@BUFFERING
def test_access_lines_reach_stdout_while_the_gateway_is_idle(unbuffered: str) -> None:
    port = free_port()
    with _gateway(port, unbuffered) as gw:
        clients = _clients(port, 10)
        peers = [ws.sock.getsockname()[1] for ws in clients]
        for ws in clients:
            ws.close()
        # nothing happens after the last close: a line still in a buffer would never come
        for peer in peers:
            gw.wait_for(access(peer, "close=1000"), timeout=10)


@BUFFERING
def test_json_lines_reach_stdout_while_the_gateway_is_idle(unbuffered: str) -> None:
    port = free_port()
    gw = _gateway(port, unbuffered, "--log-format", "json")
    gw.start(wait_for=r'"kgateway ready')
    try:
        clients = _clients(port, 5)
        peers = {f"127.0.0.1:{ws.sock.getsockname()[1]}" for ws in clients}
        for ws in clients:
            ws.close()
        seen: set[str] = set()
        start = 0
        while seen != peers:
            match = gw.wait_for(r'^\x1e\{.*"log_kind": "access"', timeout=10, start=start)
            event = json.loads(match.string.lstrip("\x1e"))
            assert event["service"] == "echo" and event["end"] == "close=1000"
            seen.add(event["peer"])
            start = gw.lines.index(match.string) + 1
        # one JSON object per line, every line of the log (not str.splitlines: it splits
        # at the record separator too)
        for line in gw.log().split("\n"):
            assert isinstance(json.loads(line.lstrip("\x1e")), dict), line
    finally:
        gw.stop()


@BUFFERING
def test_every_line_of_a_stop_is_written(unbuffered: str) -> None:
    port = free_port()
    gw = _gateway(port, unbuffered, "--drain-timeout", "0.2").start()
    clients = _clients(port, 5)
    peers = [ws.sock.getsockname()[1] for ws in clients]
    # SIGTERM with the clients still connected: the drain closes them with 1001, they answer,
    # their access lines are written while the gateway stops, the last turns before its end
    assert gw.proc is not None
    gw.proc.send_signal(signal.SIGTERM)
    for ws in clients:
        opcode, frame = ws.recv_data_frame(True)  # websocket-client answers the close
        assert opcode == websocket.ABNF.OPCODE_CLOSE
        assert int.from_bytes(frame.data[:2], "big") == 1001
    assert gw.proc.wait(15) == -signal.SIGTERM
    gw._reader.join(15)
    log = gw.log()
    for peer in peers:
        # the code is the client's answer (websocket-client's 1000)
        assert re.search(access(peer, "close=1000"), log, re.MULTILINE), log
    assert log.split("\n")[-1].endswith("[twisted.scripts._twistd_unix.UnixAppLogger#info] "
                                         "Server Shut Down."), log
    assert log.index("kgateway stopped") > max(log.index(f"127.0.0.1:{p} ") for p in peers)
