"""Path routing on a shared port and the directory service, in memory (no sockets)."""

from __future__ import annotations

import base64
import os

import pytest
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import Portal
from twisted.internet import defer
from twisted.internet.testing import StringTransport
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure
from twisted.web import resource, server
from twisted.web.test.requesthelper import DummyChannel, DummyRequest

from kgateway.auth.gate import Constraint, Gate
from kgateway.auth.principal import Identity, Realm
from kgateway.auth.settings import ChallengeScheme
from kgateway.services.directory import Folder
from kgateway.web import Router
from tests.unit.fakes import memory_gate


class Marker(resource.Resource):
    isLeaf = True

    def __init__(self, name: bytes) -> None:
        super().__init__()
        self.name = name

    def render(self, request):  # type: ignore[no-untyped-def]
        return self.name


class Factory:
    """A WebSocket factory that records the clients it is asked for and builds none
    (Autobahn's WebSocketResource then answers 500)."""

    def __init__(self) -> None:
        self.asked: list[object] = []

    def buildProtocol(self, addr: object) -> None:
        self.asked.append(addr)


def render(router: Router, path: bytes, headers: dict[bytes, bytes] | None = None):  # type: ignore[no-untyped-def]
    segments = path.lstrip(b"/").split(b"/")
    request = DummyRequest(segments)
    request.channel = DummyChannel()
    request.transport = request.channel.transport
    request.path = path
    request.uri = path
    for k, v in (headers or {}).items():
        request.requestHeaders.setRawHeaders(k, [v])
    body = router.render(request)
    if isinstance(body, bytes):
        request.write(body)
    return request.responseCode or 200, b"".join(request.written), request


@pytest.fixture
def web(tmp_path):  # type: ignore[no-untyped-def]
    root = tmp_path / "web"
    (root / "echo").mkdir(parents=True)
    (root / "index.html").write_text("<h1>home</h1>")
    (root / "echo" / "index.html").write_text("<h1>echo</h1>")
    (root / "app.mjs").write_text("export {}")
    (root / "empty").mkdir()
    (tmp_path / "secret.txt").write_text("secret")
    os.symlink(tmp_path / "secret.txt", root / "leak.txt")
    os.symlink(tmp_path, root / "outside")
    router = Router()
    router.add_folder("/", Folder(str(root)))
    router.add_websocket("/echo", Factory())  # type: ignore[arg-type]
    return router


def test_websocket_path_wants_an_upgrade(web) -> None:  # type: ignore[no-untyped-def]
    factory = web.upgrades[b"/echo"]
    code, body, request = render(web, b"/echo")
    assert code == 426
    assert request.responseHeaders.getRawHeaders(b"upgrade") == [b"websocket"]
    assert factory.asked == []
    code, body, _ = render(web, b"/echo", {b"upgrade": b"WebSocket"})
    assert len(factory.asked) == 1  # Autobahn's WebSocketResource asked it for a protocol


@pytest.mark.parametrize("path, expected", [(b"/", b"<h1>home</h1>"),
                                            (b"/echo/", b"<h1>echo</h1>")])
def test_folders_serve_their_welcome_file(web, path: bytes, expected: bytes) -> None:  # type: ignore[no-untyped-def]
    code, body, _ = render(web, path)
    assert (code, body) == (200, expected)


def test_es_modules_get_a_javascript_type(web) -> None:  # type: ignore[no-untyped-def]
    code, _, request = render(web, b"/app.mjs")
    assert code == 200
    assert request.responseHeaders.getRawHeaders(b"content-type") == [b"text/javascript"]


@pytest.mark.parametrize("path", [b"/nope.html", b"/../secret.txt", b"/%2e%2e/secret.txt",
                                  b"/echo/..%2f..%2fsecret.txt", b"/leak.txt",
                                  b"/outside/secret.txt", b"/empty/"])
def test_nothing_outside_the_folder_and_no_listings(web, path: bytes) -> None:  # type: ignore[no-untyped-def]
    from urllib.parse import unquote_to_bytes

    segments = [unquote_to_bytes(s) for s in path.lstrip(b"/").split(b"/")]
    request = DummyRequest(segments)
    request.path = path
    body = web.render(request)
    if isinstance(body, bytes):
        request.write(body)
    written = b"".join(request.written)
    assert request.responseCode == 404
    assert b"secret" not in written


def test_unknown_path_without_a_root_folder_is_404() -> None:
    router = Router()
    router.add_websocket("/echo", Factory())  # type: ignore[arg-type]
    code, _, _ = render(router, b"/other")
    assert code == 404


@pytest.mark.parametrize("authorization, code, body", [
    (None, 401, b"401 authentication required\n"),
    (b"Basic " + base64.b64encode(b"alice:nope"), 401, b"401 authentication failed\n"),
    (b"Basic " + base64.b64encode(b"bob:hunter2"), 403, b"403 user 'bob' may not use this "
                                                        b"service\n"),
    (b"Basic " + base64.b64encode(b"alice:secret"), 200, b"metrics"),
])
def test_a_guarded_http_service_asks_for_credentials(authorization: bytes | None, code: int,
                                                     body: bytes) -> None:
    refused: list[tuple[str, str]] = []
    router = Router(lambda service, reason: refused.append((service, reason)))
    router.add_folder("/metrics", Marker(b"metrics"), memory_gate({"ops"}), "metrics")
    headers = {b"authorization": authorization} if authorization else {}
    got_code, got_body, request = render(router, b"/metrics", headers)
    assert (got_code, got_body) == (code, body)
    assert refused == {401: [("metrics", "auth")], 403: [("metrics", "forbidden")]}.get(code, [])
    challenge = request.responseHeaders.getRawHeaders(b"www-authenticate")
    assert challenge == ([b'Basic realm="demo"'] if code == 401 else None)


class GetOnly(resource.Resource):
    """Like the health service: render_GET only, a body for every GET."""

    isLeaf = True

    def render_GET(self, request):  # type: ignore[no-untyped-def]
        return b'{"status": "serving"}'


def test_head_is_a_get_without_a_body_and_names_the_service() -> None:
    router = Router()
    router.add_folder("/health", GetOnly(), service="health")
    segments = [b"health"]
    request = DummyRequest(segments)
    request.path = request.uri = b"/health"
    request.method = b"HEAD"
    body = router.render(request)
    # no body for twisted.web to "eat" with a warning; the length a GET would have
    assert body == b"" and request.method == b"HEAD"
    assert request.responseHeaders.getRawHeaders(b"content-length") == [b"21"]
    assert request.kgateway_service == "health"


def _exchange(router: Router, requests: bytes) -> bytes:
    """What a real twisted.web Site answers *requests* on one keep-alive connection."""
    protocol = server.Site(router).buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(requests)
    return transport.value()


@pytest.mark.parametrize("authorization, status", [
    (None, b"401"),  # written while rendering
    (b"Basic " + base64.b64encode(b"bob:hunter2"), b"403"),
    (b"Basic " + base64.b64encode(b"alice:secret"), b"200"),
])
def test_head_on_a_guarded_service_sends_no_body_on_a_keep_alive_connection(
        authorization: bytes | None, status: bytes) -> None:
    router = Router()
    router.add_folder("/metrics", Marker(b"metrics"), memory_gate({"ops"}), "metrics")
    router.add_folder("/health", GetOnly(), service="health")
    auth = b"Authorization: " + authorization + b"\r\n" if authorization else b""
    out = _exchange(router, b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n" + auth + b"\r\n"
                            b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    head, _, rest = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 " + status)
    assert b"transfer-encoding" not in head.lower()
    # the next bytes are the next response, not a body a client would take for one
    assert rest.startswith(b"HTTP/1.1 200"), rest[:80]


def test_head_of_a_missing_file_sends_no_body(web) -> None:  # type: ignore[no-untyped-def]
    out = _exchange(web, b"HEAD /missing HTTP/1.1\r\nHost: x\r\n\r\n"
                         b"GET /missing HTTP/1.1\r\nHost: x\r\n\r\n")
    head, _, rest = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 404") and rest.startswith(b"HTTP/1.1 404"), rest[:80]


class LaterChecker:
    """A login module that answers when the test says (a real one takes ~0.2 s)."""

    credentialInterfaces = (IUsernamePassword,)

    def __init__(self) -> None:
        self.pending: list[defer.Deferred[object]] = []

    def requestAvatarId(self, credentials: object) -> defer.Deferred[object]:
        d: defer.Deferred[object] = defer.Deferred()
        self.pending.append(d)
        return d


@pytest.mark.parametrize("accept", [True, False])
def test_a_client_gone_during_its_login_is_not_answered_and_logs_no_failure(
        accept: bool) -> None:
    checker = LaterChecker()
    gate = Gate(Portal(Realm("demo"), [checker]), "demo", ChallengeScheme.BASIC,
                constraint=Constraint(frozenset({"ops"})))
    router = Router()
    router.add_folder("/metrics", Marker(b"metrics"), gate, "metrics")
    protocol = server.Site(router).buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(b"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Basic "
                          + base64.b64encode(b"alice:secret") + b"\r\n\r\n")
    protocol.connectionLost(Failure(ConnectionError("the client went away")))
    failures: list[dict[str, object]] = []

    def observe(event: dict[str, object]) -> None:
        if "log_failure" in event:
            failures.append(event)

    globalLogPublisher.addObserver(observe)
    try:
        if accept:
            checker.pending[0].callback(Identity("alice", frozenset({"ops"})))
        else:
            checker.pending[0].errback(UnauthorizedLogin())
    finally:
        globalLogPublisher.removeObserver(observe)
    assert failures == []
    assert transport.value() == b""
