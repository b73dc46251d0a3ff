"""Run the ldap login module against a real server, under a real reactor, in its own process.

    python tests/integration/ldap_login.py < request.json > results.json

The request is ``{"settings": {LdapModuleSettings fields}, "attempts": [[user, password],
...]}``; the answer one object per attempt, in order: ``{"name", "roles", "attributes",
"ms"}`` for a login, ``{"refused": true, "ms"}`` for an ``UnauthorizedLogin``. Attempts
run one after the other, each on its own connection, so ``ms`` is one attempt's latency.

Why a subprocess: the checker needs a running reactor and pytest has none (the project
has no pytest-twisted or crochet, and a reactor cannot be restarted within one process),
while ``task.react`` in a child process gives a clean reactor per call and the test sees
plain JSON.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import defer, task

from kgateway.auth.ldapmodule import LdapChecker
from kgateway.auth.settings import LdapModuleSettings


async def run(reactor: Any, request: dict[str, Any]) -> None:
    checker = LdapChecker(LdapModuleSettings(**request["settings"]), reactor)
    results: list[dict[str, Any]] = []
    for user, password in request["attempts"]:
        start = time.perf_counter()
        try:
            identity = await checker.requestAvatarId(
                UsernamePassword(user.encode(), password.encode()))
        except UnauthorizedLogin:
            results.append({"refused": True})
        else:
            results.append({"name": identity.name, "roles": sorted(identity.roles),
                            "attributes": dict(identity.attributes)})
        results[-1]["ms"] = (time.perf_counter() - start) * 1000
    json.dump(results, sys.stdout)


def main() -> None:
    request = json.load(sys.stdin)
    task.react(lambda reactor: defer.Deferred.fromCoroutine(run(reactor, request)))


if __name__ == "__main__":
    main()
