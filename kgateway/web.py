"""The Router: on a port shared by several services, the request path picks the service.

    /      directory (prefix match, the longest wins)     /echo  echo (WebSocket, exact path)
    /amqp  amqp.proxy (WebSocket)                         /health  health (plain HTTP)

A plain HTTP request to a WebSocket path gets ``426 Upgrade Required``; a path nobody
serves gets 404.
"""

from __future__ import annotations

from twisted.web import pages, resource
from twisted.web.iweb import IRequest

_NOT_FOUND = pages.notFound("Not Found", "No service at this path.")


class Router(resource.Resource):
    """Picks the service for a request by its path, on a port shared by several services."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.websockets: dict[bytes, resource.IResource] = {}
        self.folders: list[tuple[list[bytes], resource.IResource]] = []

    def add_websocket(self, path: str, target: resource.IResource) -> None:
        self.websockets[path.encode()] = target

    def add_folder(self, path: str, target: resource.IResource) -> None:
        segments = [s.encode() for s in path.strip("/").split("/") if s]
        self.folders.append((segments, target))
        self.folders.sort(key=lambda item: -len(item[0]))

    def render(self, request: IRequest) -> bytes | int:
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
        for prefix, folder in self.folders:
            if segments[: len(prefix)] == prefix:
                request.prepath, request.postpath = prefix[:], segments[len(prefix):]
                child = resource.getChildForRequest(folder, request)
                return child.render(request)
        return _NOT_FOUND.render(request)
