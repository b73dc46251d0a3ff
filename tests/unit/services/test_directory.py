"""The directory service refuses names the file system cannot take with 404, never 500.

``GET /index.html%00.txt`` used to reach ``os.stat`` with a NUL byte: ValueError, a 500 and
a logged traceback. Each request here goes through a real twisted.web Site and HTTPChannel
(in memory), so the URL decoding is Twisted's own.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from twisted.internet.testing import StringTransport
from twisted.logger import ILogObserver, globalLogPublisher
from twisted.web import resource, server
from twisted.web.test.requesthelper import DummyRequest
from zope.interface import provider

from kgateway.services.directory import MAX_NAME, Folder
from kgateway.web import Router


@pytest.fixture
def site(tmp_path) -> server.Site:  # type: ignore[no-untyped-def]
    root = tmp_path / "web"
    (root / "sub").mkdir(parents=True)
    (root / "index.html").write_text("<h1>home</h1>")
    (root / "sub" / "index.html").write_text("<h1>sub</h1>")
    (tmp_path / "secret.txt").write_text("secret")
    folder = Folder(str(root))
    folder.indexNames = ["index.html"]
    router = Router()
    router.add_folder("/", folder)
    site = server.Site(router)
    site.displayTracebacks = False
    return site


@pytest.fixture
def errors() -> Iterator[list[dict[str, object]]]:
    """Every logged failure (a traceback in the gateway's log) while the test runs."""
    found: list[dict[str, object]] = []

    @provider(ILogObserver)
    def observe(event: dict[str, object]) -> None:
        if "log_failure" in event or event.get("isError"):
            found.append(event)

    globalLogPublisher.addObserver(observe)
    yield found
    globalLogPublisher.removeObserver(observe)


def get(site: server.Site, target: bytes) -> tuple[int, bytes]:
    """Status and raw response of one HTTP/1.1 GET through a real HTTPChannel."""
    channel = site.buildProtocol(None)
    transport = StringTransport()
    channel.makeConnection(transport)
    channel.dataReceived(b"GET " + target + b" HTTP/1.1\r\nHost: localhost\r\n"
                         b"Connection: close\r\n\r\n")
    response = transport.value()
    status = int(response.split(b" ", 2)[1])
    channel.connectionLost(None)
    return status, response


BAD = [
    b"/index.html%00.txt",          # the reported bug: NUL reaches os.stat
    b"/%00",
    b"/sub%00/index.html",          # NUL in a folder segment
    b"/sub/index.html%00",
    b"/sub%2findex.html",           # encoded separator inside one segment
    b"/sub%2Findex.html",
    b"/..%2fsecret.txt",
    b"/sub%5cindex.html",           # backslash
    b"/%ff%fe.html",                # not UTF-8 (Twisted logged a traceback for it)
    b"/sub/%c3%28",
    b"/" + b"a" * (MAX_NAME + 1),   # longer than any file name
    b"/" + b"a" * 5000 + b"/x",
    b"/sub/" + b"%e2%82%ac" * 100,  # 300 UTF-8 bytes: too long once decoded
]


@pytest.mark.parametrize("target", BAD, ids=lambda t: t[:30].decode("latin-1"))
def test_names_the_file_system_cannot_take_are_404_without_a_traceback(
        site: server.Site, errors: list[dict[str, object]], target: bytes) -> None:
    status, response = get(site, target)
    assert status == 404, response[:200]
    assert b"secret" not in response
    assert errors == []


def test_good_names_still_reach_their_files(tmp_path) -> None:  # type: ignore[no-untyped-def]
    long_name = "é" * (MAX_NAME // 2)  # 254 bytes of UTF-8: legal
    (tmp_path / long_name).write_text("long")
    (tmp_path / "index.html").write_text("home")
    folder = Folder(str(tmp_path))
    for segment in (long_name.encode(), b"index.html"):
        request = DummyRequest([segment])
        child = resource.getChildForRequest(folder, request)
        assert isinstance(child, Folder) and child.path == str(tmp_path / segment.decode())
    assert folder.getChild(b"missing", DummyRequest([b"missing"])) is folder.childNotFound
