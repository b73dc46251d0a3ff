"""The commands of the example READMEs run as pasted.

Each README's indented code blocks are read; every command that starts with
``.venv/bin/kgateway`` is run in a copy of etc/examples (so the certificates land in a
temporary folder), from a folder where ``.venv/bin`` is this test run's own: ``certs`` and
``check`` must exit 0; ``run`` gateways (``&`` at the end) are started in the background,
must log ``kgateway ready``, and are stopped by their PID when the README is done. Other
commands (``psql``, ``haproxy``, ``keytool``) need what the README describes around them
and are not run. Bare ``twistd``/``kgateway`` commands, which are not on PATH after
``make run``, are refused in every README of the project.
"""

from __future__ import annotations

import glob
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from tests.helpers import BIN, ROOT, GatewayProcess

EXAMPLES = os.path.join(ROOT, "etc", "examples")
TOPOLOGIES = ["dmz-to-trusted", "enterprise-shield", "vpc", "f5-bigip"]


def commands(readme: str) -> list[str]:
    """The shell commands of *readme*'s indented code blocks (continuations joined)."""
    out: list[str] = []
    pending = ""
    in_block = False
    previous_blank = True
    with open(readme) as f:
        for raw in f:
            line = raw.rstrip("\n")
            if line.startswith("    ") and (in_block or previous_blank):
                in_block = True
                text = line.strip()
                if pending:
                    text = pending + " " + text
                    pending = ""
                if text.endswith("\\"):
                    pending = text[:-1].strip()
                    continue
                out.append(text)
            else:
                in_block = False
            previous_blank = not line.strip()
    return out


def gateway_commands(readme: str) -> list[str]:
    return [c for c in commands(readme) if c.startswith(".venv/bin/kgateway ")]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A folder laid out like the repository's root: etc/examples copied (without
    certificates), .venv/bin pointing at this test run's virtualenv."""
    folder = str(tmp_path_factory.mktemp("docs"))
    shutil.copytree(EXAMPLES, os.path.join(folder, "etc", "examples"),
                    ignore=shutil.ignore_patterns("certs"))
    os.makedirs(os.path.join(folder, ".venv"))
    os.symlink(BIN, os.path.join(folder, ".venv", "bin"))
    for command in gateway_commands(os.path.join(EXAMPLES, "README.md")):
        run_sync(command, folder)
    assert os.path.exists(os.path.join(folder, "etc", "examples", "certs", "ca.pem"))
    yield folder


def run_sync(command: str, cwd: str) -> None:
    out = subprocess.run(shlex.split(command), cwd=cwd, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, f"{command}\n{out.stdout}\n{out.stderr}"


def test_the_examples_readme_has_the_certs_command() -> None:
    assert any(" certs etc/examples/certs " in c
               for c in gateway_commands(os.path.join(EXAMPLES, "README.md")))


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_the_readme_commands_run_as_pasted(topology: str, workdir: str) -> None:
    readme = os.path.join(EXAMPLES, topology, "README.md")
    found = gateway_commands(readme)
    assert any(c.startswith(".venv/bin/kgateway run ") for c in found), readme
    started: list[GatewayProcess] = []
    try:
        for command in found:
            if command.startswith(".venv/bin/kgateway run "):
                args = shlex.split(command.removesuffix("&").strip())
                started.append(_Pasted(args, workdir, topology).start())
            else:
                run_sync(command, workdir)
        for gw in started:  # each is ready; none stopped on a pidfile or a port
            assert gw.proc is not None and gw.proc.poll() is None, gw.log()
            assert "Another twistd server is running" not in gw.log()
    finally:
        for gw in started:
            gw.stop()  # SIGTERM to its PID, as `kill %1` does


class _Pasted(GatewayProcess):
    """A gateway started with a README's own command line, from *cwd*."""

    def __init__(self, argv: list[str], cwd: str, name: str) -> None:
        super().__init__(os.devnull, name=name, cwd=cwd)
        self.argv = argv

    def command(self) -> list[str]:
        return [os.path.join(self.cwd, self.argv[0]), *self.argv[1:]]


@pytest.mark.parametrize("readme", sorted(
    [os.path.join(ROOT, "README.md")] + glob.glob(os.path.join(ROOT, "docs", "*.md"))
    + glob.glob(os.path.join(ROOT, "etc", "**", "README.md"), recursive=True)))
def test_no_command_needs_what_make_run_does_not_put_on_path(readme: str) -> None:
    bare = [c for c in commands(readme) if re.match(r"(twistd|kgateway)\s+[-a-z]+(\s|$)", c)]
    assert not bare, f"{os.path.relpath(readme, ROOT)}: use .venv/bin/...: {bare}"


def test_the_amqp_doc_s_seed_configuration_runs_as_is(tmp_path: object) -> None:
    with open(os.path.join(ROOT, "docs", "amqp.md")) as f:
        text = f.read()
    block = re.search(r"```xml\n(<gateway-config.*?</gateway-config>)\n```", text, re.S)
    assert block, "docs/amqp.md: the seed configuration"
    path = os.path.join(str(tmp_path), "amqp.xml")
    with open(path, "w") as f:
        f.write(block.group(1))
    out = subprocess.run([os.path.join(BIN, "kgateway"), "check", path], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "accept:  ws://localhost:8001/amqp" in out.stdout
