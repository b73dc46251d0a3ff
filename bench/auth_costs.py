"""What a login costs: argon2 verify, the reactor's stall, LDAP bind + groups, a JWT check.

    python -m bench.auth_costs [--rounds N]

- argon2-cffi's ``PasswordHasher()`` defaults (t=3, m=64 MiB, p=4): one verify, right and
  wrong password, and a ``PasswordFileChecker`` login for a known user with a wrong password
  vs an unknown user (the dummy hash): the two must cost the same;
- the reactor's worst lateness (a 10 ms LoopingCall) while 4 logins verify in the thread
  pool, against one verify run inline in the reactor thread;
- the ldap login module against scripts/slapd.sh (started here if not running, stopped
  again): connect + bind + groups, one connection per login, for each mode;
- the jwt login module: one RS256 and one ES256 token check.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

import jwt
from argon2 import PasswordHasher
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import defer, task

from bench.common import write_results
from kgateway.auth.filemodule import PasswordFileChecker, reactor_thread_runner, set_password
from kgateway.auth.jwtmodule import JwtChecker
from kgateway.auth.ldapmodule import LdapChecker
from kgateway.auth.settings import JwtModuleSettings, LdapModuleSettings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SLAPD_SH = os.path.join(ROOT, "scripts", "slapd.sh")
CA = os.path.join(os.environ.get("KGATEWAY_SLAPD_DIR", "/tmp/kgateway-slapd"), "tls", "ca.pem")
PEOPLE = "ou=people,dc=example,dc=com"


def ms(seconds: list[float]) -> dict[str, float]:
    values = sorted(s * 1000 for s in seconds)
    return {"median_ms": round(statistics.median(values), 2),
            "p90_ms": round(values[int(len(values) * 0.9) - 1], 2),
            "min_ms": round(values[0], 2)}


def timed(f: Callable[[], object], rounds: int) -> list[float]:
    out = []
    for _ in range(rounds):
        start = time.perf_counter()
        f()
        out.append(time.perf_counter() - start)
    return out


async def timed_async(f: Callable[[], Awaitable[object]], rounds: int) -> list[float]:
    out = []
    for _ in range(rounds):
        start = time.perf_counter()
        try:
            await f()
        except UnauthorizedLogin:
            pass
        out.append(time.perf_counter() - start)
    return out


def ldap_login(checker: LdapChecker, creds: UsernamePassword
               ) -> Callable[[], Awaitable[object]]:
    return lambda: checker.requestAvatarId(creds)


def jwt_check(checker: JwtChecker, token: str) -> Callable[[], object]:
    return lambda: checker.check(token)


async def max_lateness(reactor: Any, work: Callable[[], Awaitable[object]]) -> float:
    """The worst delay of a 10 ms tick while *work* runs."""
    worst = [0.0]
    last = [reactor.seconds()]

    def tick() -> None:
        now = reactor.seconds()
        worst[0] = max(worst[0], now - last[0] - 0.010)
        last[0] = now

    loop = task.LoopingCall(tick)
    loop.clock = reactor
    loop.start(0.010, now=True)
    await work()
    await task.deferLater(reactor, 0.025, lambda: None)  # a tick after the work, to see it
    loop.stop()
    return worst[0]


async def run(reactor: Any, rounds: int) -> None:
    figures: dict[str, Any] = {}
    table = ["| what | median ms | p90 ms | min ms |", "|---|---|---|---|"]

    def row(name: str, seconds: list[float]) -> None:
        figures[name] = ms(seconds)
        f = figures[name]
        table.append(f"| {name} | {f['median_ms']} | {f['p90_ms']} | {f['min_ms']} |")

    hasher = PasswordHasher()
    h = hasher.hash("secret")

    def wrong() -> None:
        try:
            hasher.verify(h, "wrong")
        except Exception:
            pass

    row("argon2 verify, right password (defaults)", timed(lambda: hasher.verify(h, "secret"),
                                                            rounds))
    row("argon2 verify, wrong password", timed(wrong, rounds))

    folder = tempfile.mkdtemp()
    path = os.path.join(folder, "users.passwd")
    set_password(path, "alice", "secret", ["devs"])
    checker = PasswordFileChecker(path, reactor_thread_runner(reactor))

    def login(user: bytes, password: bytes) -> Callable[[], Awaitable[object]]:
        return lambda: checker.requestAvatarId(UsernamePassword(user, password))

    # Interleaved, so that the machine's load drifts alike over the three kinds.
    kinds = {"file module: alice, right password": login(b"alice", b"secret"),
             "file module: alice, wrong password": login(b"alice", b"x"),
             "file module: unknown user": login(b"mallory", b"x")}
    samples: dict[str, list[float]] = {name: [] for name in kinds}
    for _ in range(rounds):
        for name, attempt in kinds.items():
            samples[name] += await timed_async(attempt, 1)
    for name, seconds in samples.items():
        row(name, seconds)

    async def four_logins() -> None:
        await defer.gatherResults([checker.requestAvatarId(UsernamePassword(b"alice", b"x"))
                                   .addErrback(lambda f: f.trap(UnauthorizedLogin))
                                   for _ in range(4)])

    async def inline_verify() -> None:
        await task.deferLater(reactor, 0.02, lambda: hasher.verify(h, "secret"))

    async def idle() -> None:
        await task.deferLater(reactor, 0.5, lambda: None)

    figures["reactor lateness, idle 0.5 s (ms)"] = round(
        await max_lateness(reactor, idle) * 1000, 1)
    figures["reactor lateness, 4 logins in the thread pool (ms)"] = round(
        await max_lateness(reactor, four_logins) * 1000, 1)
    figures["reactor lateness, 1 verify inline (ms)"] = round(
        await max_lateness(reactor, inline_verify) * 1000, 1)

    was_running = subprocess.run([SLAPD_SH, "status"]).returncode == 0
    subprocess.run([SLAPD_SH, "start"], check=True)
    try:
        base: dict[str, Any] = dict(host="127.0.0.1", port=3389, base=PEOPLE)
        modes: dict[str, dict[str, Any]] = {
            "ldap: DN template + group search": dict(
                user_dn_template=f"uid={{USERNAME}},{PEOPLE}",
                group_base="ou=groups,dc=example,dc=com"),
            "ldap: search + bind + memberOf": dict(user_filter="(uid={USERNAME})",
                                                   member_of=True),
            "ldaps: search + bind + memberOf": dict(user_filter="(uid={USERNAME})",
                                                    member_of=True, tls=True, port=3636,
                                                    ca_file=CA),
            "ldap+StartTLS: search + bind + memberOf": dict(user_filter="(uid={USERNAME})",
                                                            member_of=True, start_tls=True,
                                                            ca_file=CA),
        }
        for name, extra in modes.items():
            ldap = LdapChecker(LdapModuleSettings(**{**base, **extra}), reactor)
            creds = UsernamePassword(b"alice", b"secret")
            identity = await ldap.requestAvatarId(creds)
            assert identity.roles == {"devs", "ops"}, identity
            row(name, await timed_async(ldap_login(ldap, creds), rounds))
    finally:
        if not was_running:
            subprocess.run([SLAPD_SH, "stop"], check=True)

    for alg, key in (("RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048)),
                     ("ES256", ec.generate_private_key(ec.SECP256R1()))):
        pem = os.path.join(folder, f"{alg}.pem")
        with open(pem, "wb") as f:
            f.write(key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        jwt_checker = JwtChecker(JwtModuleSettings(issuer="idp", audience="gw", key_file=pem))
        token = jwt.encode({"iss": "idp", "aud": "gw", "sub": "alice",
                            "exp": int(time.time()) + 600}, key, algorithm=alg)
        row(f"jwt check {alg}", timed(jwt_check(jwt_checker, token), rounds * 10))

    table += ["", f"Medians of {rounds} sequential logins (jwt: {rounds * 10}); "
              f"load average at the end {os.getloadavg()[0]:.1f}.",
              f"Reactor lateness (10 ms ticks) idle: "
              f"{figures['reactor lateness, idle 0.5 s (ms)']} ms; with 4 concurrent file logins: "
              f"{figures['reactor lateness, 4 logins in the thread pool (ms)']} ms; with one "
              f"argon2 verify inline: {figures['reactor lateness, 1 verify inline (ms)']} ms."]
    write_results("auth_costs", f"python -m bench.auth_costs --rounds {rounds}", figures, table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    task.react(lambda reactor: defer.Deferred.fromCoroutine(run(reactor, args.rounds)))


if __name__ == "__main__":
    main()
