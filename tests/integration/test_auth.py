"""Authentication and authorization through a real twistd gateway: a password file made by
``kgateway passwd``, signed and expired and wrongly-signed JWTs, real ActiveMQ and RabbitMQ.
(The LDAP login module against a real slapd: test_auth_ldap.py.)"""

from __future__ import annotations

import base64
import datetime
import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import jwt
import pika
import pytest
import stomp
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from websocket import WebSocketBadStatusException, create_connection

from tests.helpers import BIN, GatewayProcess, free_port, gateway_xml, service_xml
from tests.integration.conftest import activemq, rabbitmq, slapd  # noqa: F401  (session fixtures)

pytestmark = pytest.mark.slow

ISSUER, AUDIENCE = "https://idp.test", "kgateway"


def passwd(path: str, user: str, password: str, *roles: str) -> None:
    args = [os.path.join(BIN, "kgateway"), "passwd", path, user, "--stdin"]
    for role in roles:
        args += ["--role", role]
    subprocess.run(args, input=password + "\n", text=True, check=True, capture_output=True)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("jwt")
    good = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = folder / "idp.pem"
    public.write_bytes(good.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return {"good": good, "other": other, "public": str(public)}


def token(key: Any, *, roles: list[str], expires_in: float = 300, sub: str = "alice") -> str:
    now = datetime.datetime.now(datetime.UTC)
    return jwt.encode({"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "roles": roles,
                       "exp": now + datetime.timedelta(seconds=expires_in),
                       "iat": now - datetime.timedelta(seconds=60)}, key, algorithm="RS256")


def realm(name: str, module: str, scheme: str = "Basic", extra: str = "") -> str:
    return (f"<realm><name>{name}</name><authentication><http-challenge-scheme>{scheme}"
            f"</http-challenge-scheme>{extra}<login-modules><login-module>{module}"
            f"<success>required</success></login-module></login-modules></authentication>"
            f"</realm>")


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, keys: dict[str, Any],
            activemq: tuple[str, int], rabbitmq: tuple[str, int]) -> Iterator[dict[str, Any]]:  # noqa: F811
    folder = tmp_path_factory.mktemp("auth")
    users = str(folder / "users.passwd")
    passwd(users, "alice", "alice-secret", "ops", "traders")
    passwd(users, "bob", "bob-secret", "viewers")
    port = free_port()
    security = ("<security>"
                + realm("staff", f"<type>file</type><options><file>{users}</file></options>")
                + realm("sso", f"<type>jwt</type><options><issuer>{ISSUER}</issuer>"
                               f"<audience>{AUDIENCE}</audience><keyFile>{keys['public']}"
                               "</keyFile></options>", "Bearer",
                        "<http-query-parameter>access_token</http-query-parameter>")
                + "</security>")
    constraint = ("<realm-name>staff</realm-name><authorization-constraint>"
                  "<require-role>ops</require-role></authorization-constraint>")
    mq_host, mq_port = activemq
    rmq_host, rmq_port = rabbitmq
    services = [
        service_xml("echo", f"ws://127.0.0.1:{port}/echo", name="echo", extra=constraint),
        service_xml("echo", f"ws://127.0.0.1:{port}/sso", name="sso",
                    extra="<realm-name>sso</realm-name><authorization-constraint>"
                          "<require-role>traders</require-role></authorization-constraint>"),
        service_xml("jms", f"ws://127.0.0.1:{port}/jms", f"stomp://{mq_host}:{mq_port}",
                    name="jms", extra=constraint),
        service_xml("amqp.proxy", f"ws://127.0.0.1:{port}/amqp",
                    f"tcp://{rmq_host}:{rmq_port}", name="amqp",
                    properties="<broker.login>guest</broker.login>"
                               "<broker.passcode>guest</broker.passcode>",
                    extra="<realm-name>staff</realm-name>"),
        service_xml("metrics", f"http://127.0.0.1:{port}/metrics", name="metrics",
                    extra=constraint),
    ]
    amqp_port = free_port()
    services.append(service_xml("amqp.proxy", f"tcp://127.0.0.1:{amqp_port}",
                                f"tcp://{rmq_host}:{rmq_port}", name="amqp-tcp",
                                properties="<broker.login>guest</broker.login>"
                                           "<broker.passcode>guest</broker.passcode>",
                                extra="<realm-name>staff</realm-name>"))
    with GatewayProcess(gateway_xml(services, security), name="auth") as process:
        process.wait_for("connected to broker", 20)
        yield {"port": port, "amqp": amqp_port, "process": process}


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def handshake_status(url: str, **kwargs: Any) -> tuple[int, dict[str, str]]:
    try:
        create_connection(url, timeout=10, **kwargs).close()
    except WebSocketBadStatusException as e:
        return e.status_code, {k.lower(): v for k, v in (e.resp_headers or {}).items()}
    return 101, {}


def test_basic_credentials_and_roles_at_the_websocket_handshake(gateway: dict[str, Any]) -> None:
    url = f"ws://127.0.0.1:{gateway['port']}/echo"
    status, headers = handshake_status(url)
    assert status == 401 and headers["www-authenticate"] == 'Basic realm="staff"'
    assert handshake_status(url, header=[f"Authorization: {basic('alice', 'wrong')}"])[0] == 401
    assert handshake_status(url, header=[f"Authorization: {basic('bob', 'bob-secret')}"])[0] \
        == 403
    ws = create_connection(url, timeout=10,
                           header=[f"Authorization: {basic('alice', 'alice-secret')}"])
    ws.send("hello")
    assert ws.recv() == "hello"
    ws.close()


def test_jwt_in_the_query_signed_expired_and_forged(gateway: dict[str, Any],
                                                   keys: dict[str, Any]) -> None:
    url = f"ws://127.0.0.1:{gateway['port']}/sso?access_token="
    good = token(keys["good"], roles=["traders"])
    ws = create_connection(url + good, timeout=10)
    ws.send("signed")
    assert ws.recv() == "signed"
    ws.close()
    status, headers = handshake_status(url + token(keys["good"], roles=["traders"],
                                                   expires_in=-120))
    assert status == 401 and headers["www-authenticate"] == 'Bearer realm="sso"'
    assert handshake_status(url + token(keys["other"], roles=["traders"]))[0] == 401
    assert handshake_status(url + token(keys["good"], roles=["viewers"]))[0] == 403
    assert handshake_status(f"ws://127.0.0.1:{gateway['port']}/sso")[0] == 401


class Listener(stomp.ConnectionListener):
    def __init__(self) -> None:
        self.errors: list[dict[str, str]] = []
        self.connections: list[dict[str, str]] = []
        self.message_list: list[tuple[dict[str, str], str]] = []

    def on_error(self, frame: Any) -> None:
        self.errors.append(frame.headers)

    def on_connected(self, frame: Any) -> None:
        self.connections.append(frame.headers)

    def on_message(self, frame: Any) -> None:
        self.message_list.append((frame.headers, frame.body))


def stomp_client(port: int, login: str, passcode: str) -> tuple[stomp.WSStompConnection, Any]:
    conn = stomp.WSStompConnection([("127.0.0.1", port)], ws_path="/jms", vhost="/",
                                   header={"Sec-WebSocket-Protocol": "v12.stomp"})
    listener = Listener()
    conn.set_listener("t", listener)
    conn.connect(login, passcode, wait=False)
    return conn, listener


def wait_until(predicate: Any, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_jms_connect_authenticates_and_the_broker_is_told_the_user(gateway: dict[str, Any]) -> None:
    port = gateway["port"]
    conn, listener = stomp_client(port, "mallory", "WRONG")
    wait_until(lambda: listener.errors)
    assert listener.errors[0]["message"] == "authentication failed"
    conn, listener = stomp_client(port, "bob", "bob-secret")
    wait_until(lambda: listener.errors)
    assert listener.errors[0]["message"] == "access denied"
    conn, listener = stomp_client(port, "alice", "alice-secret")
    wait_until(lambda: listener.connections)
    destination = f"/queue/kgw.auth.{os.getpid()}"
    conn.subscribe(destination, id="1", ack="auto")
    conn.send(destination, "who am I", headers={"kgateway_user": "mallory", "receipt": "r1"})
    wait_until(lambda: listener.message_list)
    headers, body = listener.message_list[0]
    assert body == "who am I"
    assert headers.get("kgateway_user") == "alice"  # the client's own claim never reaches it
    conn.disconnect()


def test_amqp_plain_is_checked_by_the_realm_and_mapped_to_the_broker_user(
        gateway: dict[str, Any]) -> None:
    params = dict(host="127.0.0.1", port=gateway["amqp"], socket_timeout=10,
                  blocked_connection_timeout=10)
    with pytest.raises((pika.exceptions.ProbableAccessDeniedError,
                        pika.exceptions.ProbableAuthenticationError,
                        pika.exceptions.AMQPConnectionError)):
        pika.BlockingConnection(pika.ConnectionParameters(
            credentials=pika.PlainCredentials("alice", "wrong"), **params))
    name = f"kgw-auth-{os.getpid()}"
    connection = pika.BlockingConnection(pika.ConnectionParameters(
        credentials=pika.PlainCredentials("alice", "alice-secret"),
        client_properties={"connection_name": name}, **params))
    channel = connection.channel()
    queue = channel.queue_declare("", exclusive=True).method.queue
    channel.basic_publish("", queue, b"as alice")
    method, _, body = channel.basic_get(queue, auto_ack=True)
    assert body == b"as alice"
    out = subprocess.run(["rabbitmqctl", "-q", "list_connections", "user", "client_properties"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    line = next(line for line in out.splitlines() if name in line)
    assert line.startswith("guest") and "kgateway.user" in line and "alice" in line
    connection.close()


def test_guarded_metrics_answer_401_then_200(gateway: dict[str, Any]) -> None:
    url = f"http://127.0.0.1:{gateway['port']}/metrics"
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(url, timeout=10)
    assert info.value.code == 401
    assert info.value.headers["WWW-Authenticate"] == 'Basic realm="staff"'
    request = urllib.request.Request(url, headers={"Authorization":
                                                   basic("alice", "alice-secret")})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200 and b"kgateway_connections" in response.read()


def test_check_refuses_a_realm_it_cannot_enforce(tmp_path: Any) -> None:
    config = tmp_path / "bad.xml"
    config.write_text(gateway_xml([service_xml("echo", "tcp://127.0.0.1:1", name="e",
                                               extra="<realm-name>staff</realm-name>")],
                                  "<security>" + realm("staff", "<type>file</type><options>"
                                                                "<file>/dev/null</file>"
                                                                "</options>") + "</security>"))
    result = subprocess.run([os.path.join(BIN, "kgateway"), "check", str(config)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "cannot authenticate clients of tcp://127.0.0.1:1" in result.stderr


def test_an_ldap_realm_at_the_handshake(slapd: None, tmp_path: Any) -> None:  # noqa: F811
    port = free_port()
    security = "<security>" + realm(
        "directory", "<type>ldap</type><options>"
                     "<userProvider>ldap://127.0.0.1:3389/ou=people,dc=example,dc=com"
                     "</userProvider><authIdentity>uid={USERNAME},ou=people,dc=example,dc=com"
                     "</authIdentity><groupBase>ou=groups,dc=example,dc=com</groupBase>"
                     "</options>") + "</security>"
    service = service_xml("echo", f"ws://127.0.0.1:{port}/echo", name="echo",
                          extra="<realm-name>directory</realm-name><authorization-constraint>"
                                "<require-role>ops</require-role></authorization-constraint>")
    with GatewayProcess(gateway_xml([service], security), name="ldap"):
        url = f"ws://127.0.0.1:{port}/echo"
        assert handshake_status(url, header=[f"Authorization: {basic('alice', 'secret')}"])[0] \
            == 101
        assert handshake_status(url, header=[f"Authorization: {basic('bob', 'secret')}"])[0] \
            == 403  # in devs, not ops
        assert handshake_status(url, header=[f"Authorization: {basic('alice', 'x')}"])[0] == 401
