"""In-memory stand-ins for unit tests, passed to constructors: links that record what a
session does to them, a Connector whose connects the test completes by hand, and a helper
that builds a service from a configuration text the way the gateway does."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import Portal
from twisted.internet import defer
from twisted.internet.testing import MemoryReactorClock, StringTransport
from zope.interface import implementer

from kgateway.auth.gate import Constraint, Gate
from kgateway.auth.principal import Identity, Realm
from kgateway.auth.settings import ChallengeScheme
from kgateway.config import GatewayConfig
from kgateway.interfaces import IConnector, IGatewayService, ILink, ILinkReceiver
from kgateway.services import SERVICE_TYPES, load_config
from kgateway.services.base import GatewayStatus, ServiceContext
from kgateway.transport.tracker import ConnectionTracker


@implementer(ILink)
class FakeLink:
    def __init__(self, websocket: bool = True, remote: str = "192.0.2.7:5555",
                 protocol: str | None = None) -> None:
        self.is_websocket = websocket
        self.remote = remote
        self.protocol = protocol
        self.transport = StringTransport()
        self.messages: list[tuple[bytes, bool]] = []
        self.closes: list[tuple[int, str]] = []
        self.producer: Any = None
        self.write_limit: int | None = None
        self.paused = False
        self.principal: Any = None

    def write(self, data: bytes, binary: bool = True) -> None:
        assert not self.closes, "write after close"
        self.messages.append((data, binary))

    def close(self, code: int = 1000, reason: str = "") -> None:
        self.closes.append((code, reason))

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def register_producer(self, producer: object) -> None:
        self.producer = producer

    def set_write_limit(self, limit: int) -> None:
        self.write_limit = limit

    @property
    def data(self) -> bytes:
        return b"".join(m for m, _ in self.messages)


@dataclass
class ConnectCall:
    uri: Any
    options: Any
    receiver: ILinkReceiver
    protocols: list[str]
    client: str
    d: defer.Deferred[ILink] = field(default_factory=defer.Deferred)


@implementer(IConnector)
class FakeConnector:
    """Records each connect; the test fires ``calls[i].d`` with a FakeLink or a failure."""

    def __init__(self) -> None:
        self.calls: list[ConnectCall] = []

    def connect(self, uri: Any, options: Any, receiver: ILinkReceiver, *,
                protocols: Any = (), client: str = "") -> defer.Deferred[ILink]:
        call = ConnectCall(uri, options, receiver, list(protocols), client)
        self.calls.append(call)
        return call.d


def write_config(tmp_path: Path, body: str, name: str = "g.xml") -> str:
    path = tmp_path / name
    path.write_text(f"<gateway-config>{body}</gateway-config>")
    return str(path)


def load(tmp_path: Path, body: str) -> GatewayConfig:
    return load_config(write_config(tmp_path, body), {}, {})


def build(cfg: GatewayConfig, index: int = 0, *, reactor: Any = None,
          connector: IConnector | None = None, status: GatewayStatus | None = None,
          gate: Gate | None = None) -> IGatewayService:
    """Service number *index* of *cfg*, built as the gateway builds it."""
    svc_config = cfg.services[index]
    context = ServiceContext(reactor if reactor is not None else MemoryReactorClock(),
                             svc_config, cfg,
                             connector if connector is not None else FakeConnector(),
                             status if status is not None else GatewayStatus(
                                 ConnectionTracker()), gate)
    return SERVICE_TYPES[svc_config.type].build(context)


def build_all(cfg: GatewayConfig, **kwargs: Any) -> GatewayStatus:
    """Every service of *cfg*, built as the gateway builds them around one GatewayStatus."""
    status = GatewayStatus(ConnectionTracker())
    for index, svc_config in enumerate(cfg.services):
        status.services[svc_config.name] = build(cfg, index, status=status, **kwargs)
    return status


@implementer(ICredentialsChecker)
class MemoryChecker:
    """A login module for unit tests: users with passwords and roles, answered at once."""

    credentialInterfaces = (IUsernamePassword,)

    def __init__(self, users: dict[str, tuple[str, set[str]]]) -> None:
        self.users = users

    def requestAvatarId(self, credentials: Any) -> defer.Deferred[Identity]:
        name = credentials.username.decode()
        entry = self.users.get(name)
        if entry is None or entry[0].encode() != credentials.password:
            return defer.fail(UnauthorizedLogin("wrong user name or password"))
        return defer.succeed(Identity(name, frozenset(entry[1])))


USERS = {"alice": ("secret", {"ops", "devs"}), "bob": ("hunter2", {"devs"})}


def memory_gate(roles: set[str] | None = None, *, optional: bool = False,
                users: dict[str, tuple[str, set[str]]] | None = None) -> Gate:
    """A Gate over MemoryChecker, realm "demo", Basic, requiring any of *roles*."""
    portal = Portal(Realm("demo"), [MemoryChecker(USERS if users is None else users)])
    return Gate(portal, "demo", ChallengeScheme.BASIC,
                constraint=Constraint(frozenset(roles or ())), optional=optional)
