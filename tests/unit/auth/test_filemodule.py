"""The file login module with a temporary password file: parsing, checking, reloading, passwd."""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import defer

from kgateway.auth.filemodule import (
    PasswordFileChecker,
    PasswordFileError,
    load_password_file,
    main,
    parse_password_file,
    set_password,
)
from kgateway.auth.principal import Identity
from tests.unit.auth.support import FAST_HASHER, CountingRunner, failure_of, result_of


@pytest.fixture
def passwd(tmp_path: Path) -> str:
    path = str(tmp_path / "users.passwd")
    set_password(path, "alice", "secret", ["devs", "ops"], hasher=FAST_HASHER)
    set_password(path, "bob", "hunter2", [], hasher=FAST_HASHER)
    return path


def login(checker: PasswordFileChecker, user: bytes, password: bytes) -> Identity:
    return result_of(checker.requestAvatarId(UsernamePassword(user, password)))


def refused(checker: PasswordFileChecker, user: bytes, password: bytes) -> bool:
    failure = failure_of(checker.requestAvatarId(UsernamePassword(user, password)))
    return failure.check(UnauthorizedLogin) is not None


def test_set_password_writes_a_private_file_that_parses(passwd: str) -> None:
    assert stat.S_IMODE(os.stat(passwd).st_mode) == 0o600
    users = load_password_file(passwd)
    assert users["alice"].roles == {"devs", "ops"}
    assert users["bob"].roles == frozenset()
    assert users["alice"].hash.startswith("$argon2id$")
    assert "secret" not in Path(passwd).read_text()


def test_right_password_gives_name_and_roles(passwd: str) -> None:
    checker = PasswordFileChecker(passwd, CountingRunner(), FAST_HASHER)
    assert login(checker, b"alice", b"secret") == Identity("alice", frozenset({"devs", "ops"}))


def test_wrong_password_and_unknown_user_both_verify_and_give_the_same_error(
        passwd: str) -> None:
    runner = CountingRunner()
    checker = PasswordFileChecker(passwd, runner, FAST_HASHER)
    assert refused(checker, b"alice", b"wrong")
    assert refused(checker, b"mallory", b"secret")
    assert refused(checker, b"\xff\xfe", b"secret")
    # every attempt paid for one argon2 verify, in the thread runner: same cost
    assert runner.calls == 3


class PendingRunner:
    """A run_in_thread whose "threads" finish only when the test says so."""

    def __init__(self) -> None:
        self.started: list[tuple[Callable[[], Any], defer.Deferred[Any]]] = []

    def __call__(self, f: Callable[[], Any]) -> defer.Deferred[Any]:
        d: defer.Deferred[Any] = defer.Deferred()
        self.started.append((f, d))
        return d

    def finish(self, i: int) -> None:
        f, d = self.started[i]
        d.callback(f())


def test_verifies_run_one_at_a_time_and_the_queue_is_bounded(passwd: str) -> None:
    runner = PendingRunner()
    checker = PasswordFileChecker(passwd, runner, FAST_HASHER, max_concurrent=1, max_waiting=2)
    attempts = [checker.requestAvatarId(UsernamePassword(b"alice", b"secret"))
                for _ in range(3)]
    assert len(runner.started) == 1          # two wait for the first verify
    assert refused(checker, b"alice", b"secret")   # a fourth: the queue is full
    runner.finish(0)
    assert result_of(attempts[0]).name == "alice"
    assert len(runner.started) == 2
    runner.finish(1)
    runner.finish(2)
    assert [result_of(d).name for d in attempts[1:]] == ["alice", "alice"]


def test_the_file_is_reread_when_it_changes(passwd: str) -> None:
    checker = PasswordFileChecker(passwd, CountingRunner(), FAST_HASHER)
    assert login(checker, b"bob", b"hunter2").roles == frozenset()
    set_password(passwd, "bob", "new password", ["ops"], hasher=FAST_HASHER)
    assert refused(checker, b"bob", b"hunter2")
    assert login(checker, b"bob", b"new password").roles == {"ops"}


def test_a_broken_file_refuses_everyone_until_fixed(passwd: str) -> None:
    checker = PasswordFileChecker(passwd, CountingRunner(), FAST_HASHER)
    good = Path(passwd).read_text()
    Path(passwd).write_text(good + "this line is not a user\n")
    assert refused(checker, b"alice", b"secret")
    os.unlink(passwd)
    assert refused(checker, b"alice", b"secret")
    Path(passwd).write_text(good)
    assert login(checker, b"alice", b"secret").name == "alice"


def test_set_password_keeps_comments_and_other_users(passwd: str) -> None:
    Path(passwd).write_text("# staff\n" + Path(passwd).read_text() + "\n# end\n")
    os.chmod(passwd, 0o640)
    assert set_password(passwd, "alice", "other", ["admins"], hasher=FAST_HASHER)
    assert stat.S_IMODE(os.stat(passwd).st_mode) == 0o640
    text = Path(passwd).read_text()
    assert text.splitlines()[0] == "# staff" and text.splitlines()[-1] == "# end"
    assert [line.split(":")[0] for line in text.splitlines()
            if not line.startswith("#") and line] == ["alice", "bob"]
    assert load_password_file(passwd)["alice"].roles == {"admins"}


@pytest.mark.parametrize("user, roles, reason", [
    ("", [], "empty user name"),
    ("a:b", [], "':' in user name"),
    ("#root", [], "starts with '#'"),
    (" alice", [], "spaces"),
    ("al\nice", [], "control character"),
    ("alice", ["dev ops"], "bad role"),
    ("alice", ["a,b"], "bad role"),
])
def test_set_password_refuses_what_the_file_cannot_hold(
        tmp_path: Path, user: str, roles: list[str], reason: str) -> None:
    with pytest.raises(PasswordFileError, match=reason):
        set_password(str(tmp_path / "p"), user, "pw", roles, hasher=FAST_HASHER)
    assert not (tmp_path / "p").exists()


def test_set_password_refuses_an_empty_password(tmp_path: Path) -> None:
    with pytest.raises(PasswordFileError, match="empty password"):
        set_password(str(tmp_path / "p"), "alice", "", hasher=FAST_HASHER)


def test_parse_reports_every_bad_line_with_its_number() -> None:
    h = FAST_HASHER.hash("x")
    text = f"# c\n\nalice:{h}:devs\nbob\ncarol:plaintext:\nalice:{h}\ndave:{h}:a b\neve:{h}"
    with pytest.raises(PasswordFileError) as e:
        parse_password_file(text, "f")
    assert str(e.value).splitlines() == [
        "f:4: expected name:hash:roles",
        "f:5: the hash is not an argon2 hash ($argon2id$...)",
        "f:6: user 'alice' listed twice",
        "f:7: bad role 'a b' (no spaces, ':', ',' or '#')",
    ]


def test_passwd_main_reads_stdin(tmp_path: Path) -> None:
    path = str(tmp_path / "p")
    assert main([path, "carol", "--role", "ops", "--role", "devs", "--stdin"],
                stdin=io.StringIO("s3cret\n")) == 0
    entry = load_password_file(path)["carol"]
    assert entry.roles == {"ops", "devs"}
    checker = PasswordFileChecker(path, CountingRunner())
    assert login(checker, b"carol", b"s3cret").name == "carol"


def test_passwd_main_prompts_twice_and_refuses_a_mismatch(tmp_path: Path) -> None:
    path = str(tmp_path / "p")
    answers = iter(["one", "two"])
    assert main([path, "carol"], ask=lambda prompt: next(answers)) == 1
    assert not os.path.exists(path)
    answers = iter(["same", "same"])
    assert main([path, "carol"], ask=lambda prompt: next(answers)) == 0
    assert "carol" in load_password_file(path)


def test_passwd_main_reports_a_bad_user_name(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "p"), "a:b", "--stdin"], stdin=io.StringIO("pw\n")) == 1
    assert "':' in user name" in capsys.readouterr().err
