"""Recognising, from its first bytes, a WebSocket upgrade that twisted.web would only pass on.

    client bytes --> sniff(data, websocket_paths) --> MORE     (not enough bytes to tell)
                                                  --> UPGRADE  (path, head length): hand the
                                                               bytes to Autobahn, which parses
                                                               the request (once)
                                                  --> OTHER    twisted.web's HTTPChannel parses
                                                               it, as it always did

A WebSocket handshake used to be parsed twice: by twisted.web (the request line, the
headers, a ``Request``, the ``Router``), then again by Autobahn, which ``WebSocketResource``
handed the same request re-serialised. ``sniff`` answers UPGRADE only for a request that the
old way would have handed to Autobahn byte for byte the same, so that handing it over at
once changes nothing but the cost:

    GET <target> HTTP/1.1\\r\\n          the target printable ASCII; its path (before ``?``)
                                        one of the WebSocket paths of the port
    <token>: <value>\\r\\n ...           valid for twisted.web (a token name, no NUL, CR or LF
                                        in a value, no folded lines), every name once
    \\r\\n                               within twisted.web's limits (16 KiB, 500 headers)

with exactly one ``Upgrade`` header whose value is ``websocket`` (any case: the Router's own
test), and no ``Content-Length``, ``Transfer-Encoding`` or ``Expect`` (a body, or a
``100 Continue``, is twisted.web's business). Everything else, a HEAD, HTTP/1.0, a folded or
repeated header, a malformed line, is OTHER and keeps its old answer (a 426, a 400, a 404,
Autobahn's refusal).

The checks are a few compiled regular expressions over the head (C speed, no per-header
Python objects): a full parse here would be the second parse this module exists to remove.
"""

from __future__ import annotations

import re
from collections.abc import Container
from dataclasses import dataclass
from enum import Enum

#: twisted.web's HTTPChannel.totalHeadersSize and maxHeaders: past these it answers 400
MAX_HEAD = 16384
MAX_HEADERS = 500

_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_REQUEST_LINE = re.compile(rb"GET ([!-~]+) HTTP/1\.1")
_HEADERS = re.compile(rb"(?:" + _TOKEN + rb":[^\x00\r\n]*\r\n)*")
_NAME = re.compile(rb"^(" + _TOKEN + rb"):", re.MULTILINE)
_UPGRADE_WEBSOCKET = re.compile(rb"^upgrade:[ \t]*websocket[ \t]*\r$",
                                re.MULTILINE | re.IGNORECASE)
#: headers that give a request a body or a 100 Continue
_BODY = frozenset((b"content-length", b"transfer-encoding", b"expect"))


class Verdict(Enum):
    MORE = "more"  # a prefix of a possible upgrade: wait for more bytes
    UPGRADE = "upgrade"  # a whole upgrade head for a WebSocket path
    OTHER = "other"  # anything else: twisted.web's


@dataclass(frozen=True)
class Sniffed:
    verdict: Verdict
    #: the request's path (its target before any ``?``), for UPGRADE
    path: bytes = b""
    #: the length of the head, its blank line included, for UPGRADE
    length: int = 0


MORE = Sniffed(Verdict.MORE)
OTHER = Sniffed(Verdict.OTHER)


def sniff(data: bytes, websocket_paths: Container[bytes]) -> Sniffed:
    """What the first bytes *data* of a connection are (see the module docstring)."""
    eol = data.find(b"\r\n")
    if eol < 0:
        if len(data) < 4:
            return MORE if b"GET "[: len(data)] == data else OTHER
        return MORE if data.startswith(b"GET ") and len(data) <= MAX_HEAD else OTHER
    line = _REQUEST_LINE.fullmatch(data, 0, eol)
    if line is None:
        return OTHER
    path = line.group(1).split(b"?", 1)[0]
    if path not in websocket_paths:
        return OTHER
    end = data.find(b"\r\n\r\n", eol)
    if end < 0:
        return MORE if len(data) <= MAX_HEAD else OTHER
    if end > MAX_HEAD:
        return OTHER
    start, stop = eol + 2, end + 2  # the header lines, each with its CRLF
    if _HEADERS.fullmatch(data, start, stop) is None:
        return OTHER
    names = [name.lower() for name in _NAME.findall(data, start, stop)]
    if len(names) > MAX_HEADERS or len(set(names)) != len(names) or not _BODY.isdisjoint(names):
        return OTHER
    if _UPGRADE_WEBSOCKET.search(data, start, stop) is None:
        return OTHER
    return Sniffed(Verdict.UPGRADE, path, end + 4)
