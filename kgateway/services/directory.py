"""Service ``directory``: static files from a folder, on an ``http://`` or ``https://`` accept.

Nothing outside the folder is ever served: ``..`` and encoded traversal are refused by
Twisted's FilePath, and every file is checked again after resolving symlinks, so a link
pointing outside is a 404 like a missing file. Folders without a welcome file are not
listed (404).

A request path segment is a name the file system may refuse outright: a NUL byte
(``%00``: ``os.stat`` raises ValueError, which twisted.web turned into a 500 with a logged
traceback), an encoded separator (``%2f``, ``%5c``), bytes that are not UTF-8 (Twisted logs a
traceback for those) or a name longer than any file system allows. Each is a 404, checked
before Twisted's ``static.File`` sees the segment, and anything the file system still raises
about a name is a 404 too.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.web import pages, resource, static
from twisted.web.iweb import IRequest
from zope.interface import implementer

from kgateway.config import PathResolver, ServiceConfig
from kgateway.interfaces import IHTTPService
from kgateway.services.base import PropertySpec, ServiceBase, ServiceType, check_properties

#: Types browsers insist on (ES modules) or that Python's mimetypes may not know.
EXTRA_TYPES = {
    ".mjs": "text/javascript",
    ".js": "text/javascript",
    ".json": "application/json",
    ".wasm": "application/wasm",
    ".svg": "image/svg+xml",
    ".woff2": "font/woff2",
    ".map": "application/json",
}


class Folder(static.File):
    """A static.File that never leaves its root folder, even through symlinks."""

    childNotFound = pages.notFound("Not Found", "No such file.")  # type: ignore[assignment]

    def __init__(self, path: str, root: str | None = None, **kwargs: Any) -> None:
        super().__init__(path, **kwargs)
        self.root = os.path.realpath(root or path)
        self.contentTypes = {**static.File.contentTypes, **EXTRA_TYPES}

    def getChild(self, path: bytes, request: IRequest) -> resource.IResource:
        if not _usable_name(path):
            return self.childNotFound
        try:
            child = super().getChild(path, request)
        except (OSError, ValueError):
            return self.childNotFound
        target = getattr(child, "path", None)
        if target is not None:
            real = os.path.realpath(target)
            if real != self.root and not real.startswith(self.root + os.sep):
                return self.childNotFound
        return child

    def createSimilarFile(self, path: str) -> Folder:
        f = Folder(path, self.root, defaultType=self.defaultType, registry=self.registry)
        f.indexNames = self.indexNames[:]
        return f

    def directoryListing(self) -> resource.IResource:
        return self.childNotFound

    def render(self, request: IRequest) -> bytes | int:
        real = os.path.realpath(self.path)
        if real != self.root and not real.startswith(self.root + os.sep):
            return self.childNotFound.render(request)
        return super().render(request)


#: the longest file name Linux (and most file systems) allow, in bytes
MAX_NAME = 255


def _usable_name(segment: bytes) -> bool:
    """Whether a decoded URL path segment can name a file in a folder at all."""
    if len(segment) > MAX_NAME or b"\x00" in segment or b"/" in segment or b"\\" in segment:
        return False
    try:
        segment.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@implementer(IHTTPService)
class DirectoryService(ServiceBase):
    def __init__(self, config: ServiceConfig) -> None:
        super().__init__(config)
        folder = Folder(config.settings["directory"])
        folder.indexNames = [config.settings["welcome-file"]]
        self.resource = folder

    def http_resource(self) -> resource.IResource:
        return self.resource


def _check(config: ServiceConfig, resolve: PathResolver) -> Any:
    def folder(text: str) -> str:
        path = resolve(text)
        if not os.path.isdir(path):
            raise ValueError(f"no such folder {path} (relative paths start at the "
                             "configuration file's folder)")
        return path

    return check_properties(config, {
        "directory": PropertySpec(folder, required=True),
        "welcome-file": PropertySpec(str, "index.html"),
    })


SERVICE_TYPE = ServiceType(
    name="directory",
    accept_schemes=frozenset({"http", "https"}),
    custom_check=_check,
    build=lambda context: DirectoryService(context.config),
)
