"""The Router: on a port shared by several services, the request path picks the service.

    /      directory (prefix match, the longest wins)     /echo  echo (WebSocket, exact path)
    /amqp  amqp.proxy (WebSocket)                         /health  health (plain HTTP)

A plain HTTP request to a WebSocket path gets ``426 Upgrade Required``; an upgrade goes to
Autobahn (most of them before they reach the Router: ``transport.handshake``); a path nobody
serves gets 404. A plain HTTP service with a ``<realm-name>`` (health, metrics, a
directory) asks for credentials like any web server: 401 with the realm's challenge, 403
for a user without the required role. (WebSocket services authenticate in their own
handshake, ``transport.accept``.)

A HEAD request (a balancer's monitor: ``HEAD /health``) is rendered as a GET whose body is
dropped, with its Content-Length kept: twisted.web would otherwise warn on every one that
the resource "is returning a message body". Responses written later or while rendering (a
guarded service's 401/403, files) go out without a body too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory
from twisted.cred.error import LoginFailed
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import pages, resource, server
from twisted.web.iweb import IRequest

from kgateway.auth.credentials import MalformedAuthorization
from kgateway.auth.gate import Gate
from kgateway.auth.principal import Principal

log = Logger()

_NOT_FOUND = pages.notFound("Not Found", "No service at this path.")


class Router(resource.Resource):
    """Picks the service for a request by its path, on a port shared by several services."""

    isLeaf = True

    def __init__(self, on_refused: Callable[[str, str], None] | None = None) -> None:
        super().__init__()
        self.websockets: dict[bytes, resource.IResource] = {}
        #: the WebSocket factory of each WebSocket path, for upgrades that the port's
        #: HandshakeHTTPChannel hands to Autobahn without twisted.web (transport.handshake)
        self.upgrades: dict[bytes, WebSocketServerFactory] = {}
        self.folders: list[tuple[list[bytes], resource.IResource, Gate | None, str]] = []
        #: on_refused(service, reason) for each 401/403 of a guarded folder (the tracker)
        self.on_refused = on_refused

    def add_websocket(self, path: str, factory: WebSocketServerFactory) -> None:
        """Serve WebSocket *path* with *factory*: Autobahn's ``WebSocketResource`` here, for
        the requests that reach the Router; most upgrades never do (``upgrades``)."""
        self.upgrades[path.encode()] = factory
        self.websockets[path.encode()] = WebSocketResource(factory)

    def add_folder(self, path: str, target: resource.IResource, gate: Gate | None = None,
                   service: str = "") -> None:
        segments = [s.encode() for s in path.strip("/").split("/") if s]
        self.folders.append((segments, target, gate, service))
        self.folders.sort(key=lambda item: -len(item[0]))

    def render(self, request: IRequest) -> bytes | int:
        if request.method != b"HEAD":
            return self._render(request)
        # Twisted drops a HEAD response's body at the first write only if the method is
        # HEAD by then; a response written while it reads GET (a 401, a directory's 404,
        # a file) would carry a (chunked) body that a keep-alive client or balancer
        # reads as the start of the next response. So the first write restores HEAD.
        write = request.write

        def head_write(data: bytes) -> None:
            request.method = b"HEAD"
            write(data)

        request.write = head_write  # type: ignore[method-assign]
        request.method = b"GET"
        try:
            body = self._render(request)
        finally:
            request.method = b"HEAD"  # later writes (NOT_DONE_YET) send headers only
        if isinstance(body, bytes):
            request.setHeader(b"content-length", b"%d" % len(body))
            return b""
        return body

    def _render(self, request: IRequest) -> bytes | int:
        path = request.path
        target = self.websockets.get(path)
        if target is not None:
            upgrade = (request.getHeader(b"upgrade") or b"").lower()
            if upgrade != b"websocket":
                request.setResponseCode(426, b"Upgrade Required")
                request.setHeader(b"upgrade", b"websocket")
                request.setHeader(b"content-type", b"text/plain; charset=utf-8")
                return b"426 Upgrade Required: this is a WebSocket endpoint.\n"
            return target.render(request)
        segments = request.postpath
        for prefix, folder, gate, service in self.folders:
            if segments[: len(prefix)] == prefix:
                request.prepath, request.postpath = prefix[:], segments[len(prefix):]
                request.kgateway_service = service  # type: ignore[attr-defined]
                if gate is not None:
                    return _guarded(request, gate, folder, self._refusals(service))
                return resource.getChildForRequest(folder, request).render(request)
        return _NOT_FOUND.render(request)

    def _refusals(self, service: str) -> Callable[[str], None] | None:
        on_refused = self.on_refused
        if on_refused is None:
            return None
        return lambda reason: on_refused(service, reason)


def _guarded(request: IRequest, gate: Gate, folder: resource.IResource,
             on_refused: Callable[[str], None] | None = None) -> int:
    """Render *folder* for *request* once its credentials pass *gate*; 401/403 otherwise
    (*on_refused* gets "auth" or "forbidden")."""
    headers = {name.decode("latin-1").lower(): values[0].decode("latin-1")
               for name, values in request.requestHeaders.getAllRawHeaders() if values}
    # A client gone while its credentials were checked (a login takes ~0.2 s) gets no
    # answer: writing one raised, and each such client logged a critical traceback.
    gone: list[bool] = []
    request.notifyFinish().addErrback(lambda _: gone.append(True))  # type: ignore[attr-defined]

    def refuse(code: int, why: str) -> None:
        if gone:
            return
        log.info("refusing HTTP {method} {path} from {peer}: {reason}",
                 method=request.method.decode("latin-1", "replace"),
                 path=request.path.decode("latin-1", "replace"),
                 peer=str(request.getClientAddress()), reason=why)
        if on_refused is not None:
            on_refused("auth" if code == 401 else "forbidden")
        request.setResponseCode(code)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        if code == 401:
            request.setHeader(b"www-authenticate", gate.challenge().encode())
        request.write(f"{code} {why}\n".encode())
        request.finish()

    def allowed(principal: Principal) -> None:
        if gone:
            return
        if not gate.allows(principal):
            refuse(403, f"user {principal.name!r} may not use this service")
            return
        body: Any = resource.getChildForRequest(folder, request).render(request)
        if body != server.NOT_DONE_YET:
            request.write(body)
            request.finish()

    def failed(failure: Failure) -> None:
        failure.trap(LoginFailed)
        refuse(401, "authentication failed")

    try:
        credentials = gate.credentials(headers)
    except MalformedAuthorization as e:
        refuse(401, f"unreadable credentials: {e}")
        return server.NOT_DONE_YET
    if credentials is None:
        refuse(401, "authentication required")
        return server.NOT_DONE_YET
    d = gate.login(credentials).addCallbacks(allowed, failed)
    d.addErrback(lambda f: log.failure("guarded HTTP request failed", f))
    return server.NOT_DONE_YET
