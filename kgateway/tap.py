"""``twistd kgateway``: command-line options and the service they build.

    twistd -n kgateway -c etc/gateway.xml -D gateway.hostname=example.com
    kgateway run etc/gateway.xml -D gateway.hostname=example.com      (the same, shorter)

The configuration is loaded and validated in ``Options.postOptions``, so a broken file is
reported (every problem, with file:line) and nothing starts. It is reported on its own:
twistd prints its whole usage text before a ``UsageError``, which would bury the problems,
so a broken file is a ``SystemExit`` (message on stderr, exit status 1) instead.

``--log-format json`` sets Twisted's JSON observer (``twisted.logger.jsonFileLogObserver``)
on stdout as the application's log observer: one JSON object per event, with the same
named fields (``service``, ``peer``, ``target``, ``end``...) as the text lines.

The gateway's own process (not a ``--workers`` supervisor) logs through
``kgateway.logobserver``: twistd's text lines (when twistd would write them to stdout: ``-n``
without ``--logfile``, ``--syslog`` or ``--logger``) or the JSON objects, the same text,
written once per reactor turn.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from twisted.application.service import IService
from twisted.logger import ILogObserver, jsonFileLogObserver
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
from kgateway.logobserver import json_observer, text_observer
from kgateway.services import load_config
from kgateway.systemd import Notifier
from kgateway.transport.tls import TLSConfigError
from kgateway.workers import workers_problems

LOG_FORMATS = ("text", "json")


def _log_format(text: str) -> str:
    if text not in LOG_FORMATS:
        raise usage.UsageError(f"--log-format: {text!r} is not one of {', '.join(LOG_FORMATS)}")
    return text


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
        ["log-format", None, "text", "text (twistd's lines) or json (one JSON object per "
         "event, on stdout).", _log_format],
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
            problems = workers_problems(self._load(), self["workers"])
            if problems:
                raise usage.UsageError("; ".join(problems))
            return
        self["gateway"] = self._load()

    def worker_argv(self) -> list[str]:
        """The twistd command line of one worker (the supervisor adds --worker N)."""
        argv = ["-c", "from twisted.scripts.twistd import run; run()", "-n", "--pidfile=",
                "kgateway", "-c", self["config"], "--drain-timeout", str(self["drain-timeout"]),
                "--log-format", self["log-format"]]
        if self["drain-grace"] is not None:
            argv += ["--drain-grace", str(self["drain-grace"])]
        for name, value in self["properties"].items():
            argv += ["-D", f"{name}={value}"]
        return argv

    def _load(self) -> GatewayConfig:
        try:
            return self.load()
        except ConfigError as e:
            # Not a UsageError: twistd would print its 16-line usage text first.
            raise SystemExit(f"kgateway: invalid configuration:\n{e}\n"
                             f"{self['config']}: {len(e.problems)} problem(s)") from None

    def load(self) -> GatewayConfig:
        """Load the file with the command line's properties (again: a reload)."""
        return load_config(self["config"], self["properties"])


def _use_log(parent: Any, make: Callable[[], Any]) -> None:
    """Make twistd log through *make()*: its AppLogger uses the application's ILogObserver."""
    if hasattr(parent, "setComponent") and parent.getComponent(ILogObserver, None) is None:
        parent.setComponent(ILogObserver, make())


def _use_json_log(parent: Any) -> None:
    """Make twistd log as JSON (Twisted's observer, a write per event: the supervisor)."""
    _use_log(parent, lambda: jsonFileLogObserver(sys.stdout))


def _twistd_logs_to_stdout(options: Options) -> bool:
    """Whether twistd's own observer would be its text lines on stdout (``-n``, no
    ``--logfile``, ``--syslog`` or ``--logger``): only then is ours the same."""
    twistd = getattr(options, "parent", None)
    if twistd is None:
        return False
    return (bool(twistd.get("nodaemon")) and twistd.get("logfile") in (None, "", "-")
            and not twistd.get("syslog") and twistd.get("logger") is None)


class _TwistdGateway(GatewayService):
    """What twistd runs: a gateway whose start-up errors are twistd's error exit."""

    #: makes the application's log observer (kgateway.logobserver), or None: twistd's own
    log_observer: Callable[[], Any] | None = None

    def setServiceParent(self, parent: Any) -> Any:
        if self.log_observer is not None:
            _use_log(parent, self.log_observer)
        return super().setServiceParent(parent)

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
    # No "Starting factory <... at 0x...>" line for any connection, ours or a library's.
    from twisted.internet import protocol

    protocol.Factory.noisy = False
    # systemd talks to the main process only: workers get no $NOTIFY_SOCKET.
    notifier = Notifier()
    notifier.forget_environment()
    json_log = options["log-format"] == "json"
    if options["workers"] > 1 and options["worker"] is None:
        from kgateway.workers import WorkerSupervisor

        class _Supervisor(WorkerSupervisor):
            def setServiceParent(self, parent: Any) -> Any:
                if json_log:
                    _use_json_log(parent)
                return super().setServiceParent(parent)

        return _Supervisor(reactor, options.worker_argv(), options["workers"],
                           notifier=notifier)
    drain = DrainSettings(options["drain-grace"], options["drain-timeout"])
    try:
        gateway = _TwistdGateway(reactor, options["gateway"], drain=drain,
                                 worker=options["worker"], loader=options.load,
                                 notifier=notifier, signals=True)
    except (TLSConfigError, AuthConfigError) as e:
        raise SystemExit(f"kgateway: {e}") from e
    if json_log:
        gateway.log_observer = lambda: json_observer(sys.stdout, reactor)
    elif _twistd_logs_to_stdout(options):
        gateway.log_observer = lambda: text_observer(sys.stdout, reactor)
    return gateway
