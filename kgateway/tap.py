"""``twistd kgateway``: command-line options and the service they build.

    twistd -n kgateway -c etc/gateway.xml -D gateway.hostname=example.com

The configuration is loaded and validated in ``Options.postOptions``, so a broken file is
reported (every problem, with file:line) by twistd's usage error and nothing starts.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import IService
from twisted.python import usage

from kgateway import config as config_module


def parse_define(value: str) -> tuple[str, str]:
    name, sep, text = value.partition("=")
    if not sep or not name.strip():
        raise usage.UsageError(f"-D expects name=value, not {value!r}")
    return name.strip(), text


class Options(usage.Options):
    synopsis = "[-c gateway.xml] [-D name=value ...]"
    longdesc = "Run the kgateway WebSocket gateway on a Kaazing-style gateway-config file."
    optParameters = [
        ["config", "c", "etc/gateway.xml", "The gateway-config XML file."],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["properties"] = {}

    def opt_D(self, value: str) -> None:
        """Set property name=value, overriding the environment and the file (repeatable)."""
        name, text = parse_define(value)
        self["properties"][name] = text

    opt_define = opt_D

    def postOptions(self) -> None:
        try:
            self["gateway"] = config_module.load(self["config"], self["properties"])
        except config_module.ConfigError as e:
            raise usage.UsageError(f"invalid configuration:\n{e}") from None


def makeService(options: Options, reactor: Any = None) -> IService:
    if reactor is None:
        from twisted.internet import reactor as default_reactor

        reactor = default_reactor
    from kgateway.gateway import build_gateway

    return build_gateway(reactor, options["gateway"])
