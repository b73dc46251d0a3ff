"""The ``file`` login module: users, argon2 password hashes and roles in a text file.

The file
--------
One user per line, three fields separated by colons::

    # kgateway password file: name:argon2-hash:roles
    alice:$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2g...:devs,ops
    bob:$argon2id$v=19$m=65536,t=3,p=4$...:

- *name*: the user name as sent (case-sensitive), UTF-8, not empty, no ``:``, no control
  characters or surrounding spaces, not starting with ``#``;
- *hash*: an argon2 hash in its PHC string form (``$argon2id$...``, what argon2-cffi's
  ``PasswordHasher.hash`` returns; it never contains ``:``);
- *roles*: comma-separated role names, possibly none (the field may be empty or left out).

Blank lines and lines starting with ``#`` are comments. A name may appear once. Write it
with ``kgateway passwd FILE USER [--role R]...`` (``main`` below): it replaces the file
atomically, keeps comments and other users, and creates the file with mode 0600.

Checking a password
-------------------
``PasswordFileChecker`` is a cred ``ICredentialsChecker`` for ``IUsernamePassword``.
argon2's verify is deliberately slow: 110-190 ms with argon2-cffi's default parameters
(t=3, m=64 MiB, p=4) on this project's 2-core test machine at load 3, 3 times that at
load 10 (``python -m bench.auth_costs``), far too long for the reactor thread: it runs in the reactor's thread pool (argon2-cffi releases the GIL). An unknown user
is verified against a dummy hash made with the same parameters, so an unknown name and a
wrong password cost the same time and give the same ``UnauthorizedLogin``.

One verify already keeps 4 lanes (p=4) busy, so verifies run one at a time by default
(``max_concurrent``): a burst of logins then queues instead of taking every core from the
reactor and the relayed traffic. At most ``max_waiting`` attempts queue; beyond that a
login is refused at once (and a warning logged), so a flood of bad passwords costs bounded
memory and CPU.

The file is re-read when its (mtime, size, inode) changes, checked with one ``stat`` per
login attempt in the reactor thread (a small local file). A file that cannot be read or
parsed fails closed: every login is refused and the problem is logged, until it is fixed.
``load_password_file`` raises ``PasswordFileError`` so configuration checking can refuse
a bad file before anything starts.
"""

from __future__ import annotations

import argparse
import getpass
import os
import re
import secrets
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import defer, threads
from twisted.logger import Logger
from zope.interface import implementer

from kgateway.auth.principal import Identity

log = Logger()

T = TypeVar("T")

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_ROLE = re.compile(r"[^\s:,#]+")


class PasswordFileError(ValueError):
    """A password file that cannot be used; the message names the file and line."""


@dataclass(frozen=True)
class Entry:
    name: str
    hash: str
    roles: frozenset[str]


def check_name(name: str) -> str | None:
    """Why *name* cannot be a user name in the file, or None if it can."""
    if not name:
        return "empty user name"
    if ":" in name:
        return "':' in user name"
    if _CONTROL.search(name):
        return "control character in user name"
    if name != name.strip():
        return "spaces around user name"
    if name.startswith("#"):
        return "user name starts with '#'"
    return None


def check_role(role: str) -> str | None:
    if not _ROLE.fullmatch(role) or _CONTROL.search(role):
        return f"bad role {role!r} (no spaces, ':', ',' or '#')"
    return None


def parse_password_file(text: str, source: str = "<password file>") -> dict[str, Entry]:
    """The users of a password file's *text*; ``PasswordFileError`` naming every bad line."""
    users: dict[str, Entry] = {}
    problems = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.split(":")
        if len(fields) not in (2, 3):
            problems.append(f"{source}:{number}: expected name:hash:roles")
            continue
        name, hash_, roles_text = fields[0], fields[1], fields[2] if len(fields) == 3 else ""
        why = check_name(name)
        if why is None and not hash_.startswith("$argon2"):
            why = "the hash is not an argon2 hash ($argon2id$...)"
        roles = [r.strip() for r in roles_text.split(",") if r.strip()]
        for role in roles:
            why = why or check_role(role)
        if why is None and name in users:
            why = f"user {name!r} listed twice"
        if why is not None:
            problems.append(f"{source}:{number}: {why}")
            continue
        users[name] = Entry(name, hash_, frozenset(roles))
    if problems:
        raise PasswordFileError("\n".join(problems))
    return users


def load_password_file(path: str) -> dict[str, Entry]:
    """Read and parse *path*; ``PasswordFileError`` if it cannot be read or parsed."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise PasswordFileError(f"{path}: cannot read: {e}") from None
    return parse_password_file(text, path)


def _file_key(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


RunInThread = Callable[[Callable[[], Any]], "defer.Deferred[Any]"]


def reactor_thread_runner(reactor: Any) -> RunInThread:
    """Run a callable in *reactor*'s thread pool, its result as a Deferred."""

    def run(f: Callable[[], T]) -> defer.Deferred[T]:
        return threads.deferToThreadPool(reactor, reactor.getThreadPool(), f)

    return run


@implementer(ICredentialsChecker)
class PasswordFileChecker:
    """cred checker over a password file (see the module docstring).

    *run_in_thread* runs argon2's verify off the reactor thread: give it
    ``reactor_thread_runner(reactor)`` in the gateway, a synchronous runner in tests.
    """

    credentialInterfaces = (IUsernamePassword,)

    def __init__(self, path: str, run_in_thread: RunInThread,
                 hasher: PasswordHasher | None = None, max_concurrent: int = 1,
                 max_waiting: int = 64) -> None:
        self.path = path
        self._run = run_in_thread
        self._slots = defer.DeferredSemaphore(max_concurrent)
        self._max_waiting = max_waiting
        self._hasher = hasher or PasswordHasher()
        # Same parameters as real hashes made by set_password: same verify time.
        self._dummy = self._hasher.hash(secrets.token_bytes(16))
        self._key: tuple[int, int, int] | None = None
        self._users: Mapping[str, Entry] | None = None
        self._problem: str | None = None
        self._reload()

    def _reload(self) -> None:
        key = _file_key(self.path)
        if key is not None and key == self._key:
            return
        self._key = key
        try:
            self._users = load_password_file(self.path)
        except PasswordFileError as e:
            self._users = None
            if str(e) != self._problem:  # once per problem, not once per login attempt
                log.error("password file unusable, refusing every login: {problem}",
                          problem=str(e))
            self._problem = str(e)
        else:
            self._problem = None
            log.info("password file {path} loaded: {count} user(s)", path=self.path,
                     count=len(self._users))

    # Deferred[Any]: cred types the avatar id as bytes; ours is an Identity (principal.py).
    def requestAvatarId(self, credentials: Any) -> defer.Deferred[Any]:
        self._reload()
        users = self._users
        try:
            name = credentials.username.decode("utf-8")
        except UnicodeDecodeError:
            name = ""
        password = credentials.password
        entry = users.get(name) if users is not None else None
        hash_ = entry.hash if entry is not None else self._dummy

        def verify() -> bool:
            try:
                return bool(self._hasher.verify(hash_, password))
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                return False

        def decide(ok: bool) -> Identity:
            if not ok or entry is None:
                raise UnauthorizedLogin()
            return Identity(entry.name, entry.roles)

        if len(self._slots.waiting) >= self._max_waiting:
            log.warn("{count} password checks already queued: refusing {user!r}",
                     count=len(self._slots.waiting), user=name)
            return defer.fail(UnauthorizedLogin())
        return self._slots.run(self._run, verify).addCallback(decide)


def set_password(path: str, user: str, password: str, roles: Iterable[str] = (),
                 hasher: PasswordHasher | None = None) -> bool:
    """Add *user* to the password file at *path*, or replace its line; atomically.

    Comments and other users are kept. A new file is created with mode 0600; an existing
    file keeps its mode and, where permitted, its owner (the gateway's user must still be
    able to read it). ``PasswordFileError`` if the name, a role or the file is bad.
    Returns True if the user was already in the file.
    """
    roles = list(roles)
    why = check_name(user) or next((w for w in map(check_role, roles) if w), None)
    if why is None and not password:
        why = "empty password"
    if why is not None:
        raise PasswordFileError(why)
    line = f"{user}:{(hasher or PasswordHasher()).hash(password)}:{','.join(sorted(set(roles)))}"
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        st = os.stat(path)
        mode, owner = st.st_mode & 0o777, (st.st_uid, st.st_gid)
    except FileNotFoundError:
        text, mode = "# kgateway password file: name:argon2-hash:role,role\n", 0o600
        owner = None
    except (OSError, UnicodeDecodeError) as e:
        raise PasswordFileError(f"{path}: cannot read: {e}") from None
    parse_password_file(text, path)  # refuse to rewrite a file we could not read back
    lines = text.splitlines()
    for i, old in enumerate(lines):
        if not old.lstrip().startswith("#") and old.split(":", 1)[0] == user:
            lines[i] = line
            replaced = True
            break
    else:
        lines.append(line)
        replaced = False
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".passwd-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        if owner is not None and owner != (os.getuid(), os.getgid()):
            try:
                os.chown(tmp, *owner)
            except PermissionError:
                pass  # not root: the file is then ours, as it would be with any editor
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return replaced


def main(argv: Sequence[str] | None = None, stdin: Any = None,
         ask: Callable[[str], str] = getpass.getpass) -> int:
    """``kgateway passwd FILE USER [--role R]... [--stdin]``; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="kgateway passwd",
        description="Add a user to a kgateway password file, or change its password and roles.")
    parser.add_argument("file", help="the password file (created if missing, mode 0600)")
    parser.add_argument("user")
    parser.add_argument("--role", action="append", default=[], metavar="ROLE",
                        help="a role of the user (repeatable); the roles replace the old ones")
    parser.add_argument("--stdin", action="store_true",
                        help="read the password from the first line of standard input")
    args = parser.parse_args(argv)
    if args.stdin:
        password = (stdin or sys.stdin).readline().rstrip("\r\n")
    else:
        password = ask(f"Password for {args.user}: ")
        if ask("Again: ") != password:
            print("kgateway passwd: the passwords differ", file=sys.stderr)
            return 1
    try:
        replaced = set_password(args.file, args.user, password, args.role)
    except PasswordFileError as e:
        print(f"kgateway passwd: {e}", file=sys.stderr)
        return 1
    print(f"kgateway passwd: {'changed' if replaced else 'added'} {args.user} in {args.file}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
