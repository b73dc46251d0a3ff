"""The ldap login module against a real slapd (scripts/slapd.sh): binds, groups, TLS, injection.

The directory (see scripts/slapd.sh): alice and bob, password "secret"; groups devs
(alice, bob) and ops (alice), added online so that memberOf works too. Each test sends a
batch of attempts to tests/integration/ldap_login.py, which runs the checker under a real
reactor in a child process (why: see that file).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from tests.helpers import ROOT

RUNNER = os.path.join(ROOT, "tests", "integration", "ldap_login.py")
DIR = os.environ.get("KGATEWAY_SLAPD_DIR", "/tmp/kgateway-slapd")
PEOPLE = "ou=people,dc=example,dc=com"
GROUPS = "ou=groups,dc=example,dc=com"
CA = os.path.join(DIR, "tls", "ca.pem")

pytestmark = pytest.mark.slow


def attempts(settings: dict[str, Any], *pairs: tuple[str, str]) -> list[dict[str, Any]]:
    base = {"host": "127.0.0.1", "port": 3389, "base": PEOPLE, "timeout": 10.0}
    request = json.dumps({"settings": {**base, **settings}, "attempts": pairs})
    out = subprocess.run([sys.executable, RUNNER], input=request, capture_output=True,
                         text=True, timeout=60, check=True)
    results: list[dict[str, Any]] = json.loads(out.stdout)
    assert len(results) == len(pairs)
    return results


def outcome(result: dict[str, Any]) -> tuple[str, list[str]] | None:
    return None if result.get("refused") else (result["name"], result["roles"])


DN_MODE = {"user_dn_template": f"uid={{USERNAME}},{PEOPLE}", "group_base": GROUPS}
SEARCH_MODE = {"user_filter": "(&(uid={USERNAME})(objectClass=inetOrgPerson))",
               "member_of": True}
# Each of these would log in as alice with her password if the user name reached the
# filter unescaped: "al*" matches only alice; "*)(uid=alice" makes (&(uid=*)(uid=alice)...).
INJECTIONS = [("*)(uid=*", "secret"), ("al*", "secret"), ("*)(uid=alice", "secret"),
              ("*", "secret")]


@pytest.mark.parametrize("mode", [DN_MODE, SEARCH_MODE], ids=["dn-template", "search"])
def test_users_roles_and_refusals(slapd: None, mode: dict[str, Any]) -> None:
    results = attempts(mode, ("alice", "secret"), ("bob", "secret"), ("alice", "wrong"),
                       ("alice", ""), ("nobody", "secret"), *INJECTIONS)
    assert [outcome(r) for r in results] == [
        ("alice", ["devs", "ops"]), ("bob", ["devs"]), None, None, None,
        *[None] * len(INJECTIONS)]
    assert results[0]["attributes"] == {"dn": f"uid=alice,{PEOPLE}"}


def test_group_search_and_member_of_agree(slapd: None) -> None:
    groups_only = attempts({**DN_MODE}, ("alice", "secret"))
    member_of_only = attempts({**DN_MODE, "group_base": None, "member_of": True},
                              ("alice", "secret"))
    assert outcome(groups_only[0]) == outcome(member_of_only[0]) == ("alice", ["devs", "ops"])


def test_the_name_as_the_directory_spells_it(slapd: None) -> None:
    typed = attempts(DN_MODE, ("ALICE", "secret"))
    spelled = attempts({**SEARCH_MODE, "name_attribute": "uid"}, ("ALICE", "secret"))
    assert outcome(typed[0]) == ("ALICE", ["devs", "ops"])   # LDAP ignores case
    assert outcome(spelled[0]) == ("alice", ["devs", "ops"])
    no_such_attribute = attempts({**DN_MODE, "name_attribute": "mail"}, ("alice", "secret"))
    assert outcome(no_such_attribute[0]) is None


def test_search_with_a_service_account(slapd: None) -> None:
    account = {**SEARCH_MODE, "bind_dn": "cn=admin,dc=example,dc=com"}
    good = attempts({**account, "bind_password": "secret"}, ("alice", "secret"),
                    ("alice", "wrong"))
    assert [outcome(r) for r in good] == [("alice", ["devs", "ops"]), None]
    bad_account = attempts({**account, "bind_password": "wrong"}, ("alice", "secret"))
    assert outcome(bad_account[0]) is None


def test_ldaps_and_starttls_verify_the_server(slapd: None) -> None:
    ldaps = {**SEARCH_MODE, "port": 3636, "tls": True}
    start_tls = {**SEARCH_MODE, "start_tls": True}
    for settings in (ldaps, start_tls):
        trusted = attempts({**settings, "ca_file": CA}, ("alice", "secret"), ("alice", "x"))
        assert [outcome(r) for r in trusted] == [("alice", ["devs", "ops"]), None]
        # the system's CAs do not know our test CA: no login, whatever the password
        untrusted = attempts(settings, ("alice", "secret"))
        assert outcome(untrusted[0]) is None


def test_a_server_that_is_not_there_is_a_refusal(slapd: None) -> None:
    closed = attempts({**DN_MODE, "port": 1, "timeout": 5.0}, ("alice", "secret"))
    assert outcome(closed[0]) is None
