"""The ``kgateway`` command.

``kgateway run [CONFIG] [-D name=value...] [twistd kgateway options]``: run the gateway in
the foreground; the same as ``twistd -n --pidfile= kgateway -c CONFIG ...`` (twistd, in
this process, so it needs nothing on PATH and no twistd.pid: several run in one folder).

``kgateway reload PID|PIDFILE``: ask a running gateway to reload its configuration
(SIGHUP; ``kill -HUP PID`` and ``systemctl reload kgateway`` do the same).

``kgateway check CONFIG [--workers N]``: validate a configuration without starting anything
(with ``--workers``: also that it can run as N processes, ``kgateway.workers.workers_problems``).

Prints each service with its properties substituted, or every problem as file:line, and
exits 1 on error (2 on a usage error).

``kgateway certs DIR NAME...``: a private CA and certificates (see kgateway.certs).

``kgateway passwd FILE USER [--role ROLE]... [--stdin]``: add or change a user of a
password file for the ``file`` login module (argon2 hashes; see kgateway.auth.filemodule).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from kgateway import __version__
from kgateway.config import ConfigError, GatewayConfig, Property, parse_define


def describe_config(cfg: GatewayConfig) -> str:
    """What ``kgateway check`` prints: each service with its values substituted."""
    out = [f"{cfg.file}: {len(cfg.services)} service(s)"]
    for svc in cfg.services:
        out.append(f"\nservice {svc.name!r} ({svc.type}), line {svc.line}")
        if svc.description:
            out.append(f"  description: {svc.description}")
        out.extend(f"  accept:  {uri}" for uri in svc.accepts)
        out.extend(f"  connect: {uri}" for uri in svc.connects)
        # A service type may say more than its elements do (jms: the brokers it derived).
        describe = getattr(svc.settings, "describe", None)
        if callable(describe):
            out.extend(describe())

        def props(items: Sequence[Property], indent: str) -> None:
            for p in items:
                out.append(f"{indent}{p.name}: {p.value}" if not p.children else
                           f"{indent}{p.name}:")
                props(p.children, indent + "  ")

        if svc.properties.items:
            out.append("  properties:")
            props(svc.properties.items, "    ")
        for kind, options in (("accept-options", svc.accept_options),
                              ("connect-options", svc.connect_options)):
            if options.explicit():
                out.append(f"  {kind}:")
                out.extend(f"    {k}: {v}" for k, v in options.explicit().items())
        for c in svc.cross_site_constraints:
            out.append(f"  cross-site-constraint: allow-origin {c.allow_origin}")
        if svc.realm_name:
            out.append(f"  realm-name: {svc.realm_name}")
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kgateway", description="kgateway tools")
    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="validate a gateway-config file")
    check.add_argument("config", nargs="?", default="etc/gateway.xml")
    check.add_argument("-D", dest="defines", action="append", default=[],
                       metavar="NAME=VALUE", help="override a property")
    check.add_argument("--workers", type=int, default=1, metavar="N",
                       help="also check that the file can run as N worker processes")
    certs = commands.add_parser("certs", help="make a private CA and certificates for TLS")
    certs.add_argument("folder")
    certs.add_argument("names", nargs="+", metavar="NAME", help="host name of each certificate")
    certs.add_argument("--alt", action="append", default=[],
                       help="extra name or IP address for every certificate")
    certs.add_argument("--expired", action="store_true",
                       help="make already-expired certificates (NAME-expired.pem), for tests")
    commands.add_parser("passwd", add_help=False,
                        help="add or change a user of a password file (file login module)")
    commands.add_parser("run", add_help=False,
                        help="run the gateway: kgateway run [CONFIG] [-D name=value...] "
                        "[--workers N, --drain-grace, --drain-timeout, --log-format json]")
    reload = commands.add_parser("reload", help="reload a running gateway's configuration")
    reload.add_argument("pid", metavar="PID|PIDFILE")
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["run"]:
        return run(argv[1:])
    if argv[:1] == ["passwd"]:
        from kgateway.auth.filemodule import main as passwd

        return passwd(argv[1:])
    args = parser.parse_args(argv)
    if args.command == "reload":
        return send_reload(args.pid)
    if args.command == "certs":
        from kgateway.certs import make_certificate

        os.makedirs(args.folder, exist_ok=True)
        for name in args.names:
            cert, key = make_certificate(args.folder, name, args.alt, expired=args.expired)
            print(f"{cert}\n{key}")
        print(os.path.join(args.folder, "ca.pem"))
        return 0
    from kgateway.services import load_config

    overrides = {}
    for item in args.defines:
        try:
            name, value = parse_define(item)
        except ValueError as e:
            parser.error(str(e))
        overrides[name] = value
    try:
        cfg = load_config(args.config, overrides)
    except ConfigError as e:
        print(e, file=sys.stderr)
        print(f"{args.config}: {len(e.problems)} problem(s)", file=sys.stderr)
        return 1
    from kgateway.workers import workers_problems

    problems = workers_problems(cfg, args.workers)
    if problems:
        print("\n".join(f"{args.config}: {p}" for p in problems), file=sys.stderr)
        return 1
    print(describe_config(cfg))
    return 0


def twistd_argv(args: Sequence[str]) -> list[str]:
    """``kgateway run`` ARGS as twistd's command line (without the program name)."""
    args = list(args)
    config = "etc/gateway.xml"
    if args and not args[0].startswith("-"):
        config, args = args[0], args[1:]
    return ["-n", "--pidfile=", "kgateway", "-c", config, *args]


def run(args: Sequence[str]) -> int:
    """``kgateway run``: twistd in this process (it exits the process itself)."""
    if args[:1] in (["-h"], ["--help"]):
        print("usage: kgateway run [CONFIG] [-D name=value ...] [--workers N] "
              "[--drain-grace T] [--drain-timeout T] [--log-format text|json]\n\n"
              "Runs the gateway in the foreground on CONFIG (default etc/gateway.xml): "
              "twistd -n --pidfile= kgateway -c CONFIG ...\nCtrl-C stops it at once; "
              "SIGTERM drains; SIGHUP reloads CONFIG.")
        return 0
    from twisted.scripts.twistd import run as twistd

    sys.argv = ["kgateway run", *twistd_argv(args)]
    twistd()
    return 0


def send_reload(target: str) -> int:
    """SIGHUP to the gateway whose PID is *target*, or is written in the file *target*."""
    import signal

    text = target
    if not target.isdigit():
        try:
            with open(target) as f:
                text = f.read().strip()
        except OSError as e:
            print(f"kgateway reload: {target}: {e.strerror}", file=sys.stderr)
            return 1
    if not text.isdigit():
        print(f"kgateway reload: {target}: not a process id", file=sys.stderr)
        return 1
    try:
        os.kill(int(text), signal.SIGHUP)
    except OSError as e:
        print(f"kgateway reload: pid {text}: {e.strerror}", file=sys.stderr)
        return 1
    print(f"kgateway reload: sent SIGHUP to {text}; the gateway's log says what it applied")
    return 0


if __name__ == "__main__":
    sys.exit(main())
