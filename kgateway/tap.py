"""``twistd kgateway``: command-line options and the service they build.

    twistd -n kgateway -c etc/gateway.xml -D gateway.hostname=example.com

The configuration is loaded and validated in ``Options.postOptions``, so a broken file is
reported (every problem, with file:line) by twistd's usage error and nothing starts.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import IService
from twisted.python import usage

from kgateway.auth.settings import AuthConfigError
from kgateway.config import (
    ConfigError,
    GatewayConfig,
    parse_define,
    parse_duration,
    parse_positive_int,
)
from kgateway.gateway import DrainSettings, GatewayService
from kgateway.listeners import ListenError
from kgateway.services import load_config
from kgateway.transport.tls import TLSConfigError


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as e:
        raise usage.UsageError(str(e)) from None


def _positive(text: str) -> int:
    try:
        return parse_positive_int(text)
    except ValueError as e:
        raise usage.UsageError(str(e)) from None


class Options(usage.Options):
    synopsis = "[-c gateway.xml] [-D name=value ...]"
    longdesc = "Run the kgateway WebSocket gateway on a Kaazing-style gateway-config file."
    optParameters = [
        ["config", "c", "etc/gateway.xml", "The gateway-config XML file."],
        ["workers", None, 1, "Run N gateway processes sharing every port (SO_REUSEPORT).",
         _positive],
        ["drain-grace", None, None, "On SIGTERM, go on accepting this long with health 503 "
         "(default 5sec with a health service, else 0).", _duration],
        ["drain-timeout", None, 10.0, "Then give open connections this long before closing "
         "them with 1001 Going Away.", _duration],
        ["worker", None, None, "(internal) this process is worker N of --workers.", _positive],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["properties"] = {}

    def opt_D(self, value: str) -> None:
        """Set property name=value, overriding the environment and the file (repeatable)."""
        try:
            name, text = parse_define(value)
        except ValueError as e:
            raise usage.UsageError(str(e)) from None
        self["properties"][name] = text

    opt_define = opt_D

    def postOptions(self) -> None:
        if self["workers"] > 1 and self["worker"] is None:
            # The supervisor only checks the file; each worker loads it for itself.
            for uri in (u for s in self._load().services for u in s.accepts):
                if uri.port == 0:
                    raise usage.UsageError(f"--workers needs fixed ports, not {uri}")
            return
        self["gateway"] = self._load()

    def worker_argv(self) -> list[str]:
        """The twistd command line of one worker (the supervisor adds --worker N)."""
        argv = ["-c", "from twisted.scripts.twistd import run; run()", "-n", "--pidfile=",
                "kgateway", "-c", self["config"], "--drain-timeout", str(self["drain-timeout"])]
        if self["drain-grace"] is not None:
            argv += ["--drain-grace", str(self["drain-grace"])]
        for name, value in self["properties"].items():
            argv += ["-D", f"{name}={value}"]
        return argv

    def _load(self) -> GatewayConfig:
        try:
            return load_config(self["config"], self["properties"])
        except ConfigError as e:
            raise usage.UsageError(f"invalid configuration:\n{e}") from None


class _TwistdGateway(GatewayService):
    """What twistd runs: a gateway whose start-up errors are twistd's error exit."""

    def privilegedStartService(self) -> None:
        try:
            super().privilegedStartService()
        except ListenError as e:
            # twistd turns SystemExit(str) into that line on stderr and exit status 1.
            raise SystemExit(f"kgateway: {e}") from e


def makeService(options: Options, reactor: Any = None) -> IService:
    if reactor is None:
        from twisted.internet import reactor as default_reactor

        reactor = default_reactor
    if options["workers"] > 1 and options["worker"] is None:
        from kgateway.workers import WorkerSupervisor

        return WorkerSupervisor(reactor, options.worker_argv(), options["workers"])
    drain = DrainSettings(options["drain-grace"], options["drain-timeout"])
    try:
        return _TwistdGateway(reactor, options["gateway"], drain=drain,
                              worker=options["worker"])
    except (TLSConfigError, AuthConfigError) as e:
        raise SystemExit(f"kgateway: {e}") from e
