"""``kgateway run`` and ``kgateway reload``: the command lines they make and the signal."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kgateway import cli


def test_run_is_twistd_in_the_foreground_without_a_pidfile() -> None:
    assert cli.twistd_argv(["etc/x.xml", "-D", "a=b", "--workers", "2"]) == [
        "-n", "--pidfile=", "kgateway", "-c", "etc/x.xml", "-D", "a=b", "--workers", "2"]
    assert cli.twistd_argv(["-D", "a=b"]) == [
        "-n", "--pidfile=", "kgateway", "-c", "etc/gateway.xml", "-D", "a=b"]


def test_reload_sends_sighup_to_a_pid_or_the_pid_in_a_file(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    # a child that waits for SIGHUP and says it got it
    child = subprocess.Popen([sys.executable, "-c",
                              "import signal, sys\n"
                              "signal.signal(signal.SIGHUP, lambda *a: sys.exit(7))\n"
                              "print('ready', flush=True)\nsignal.pause()"],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
        pidfile = tmp_path / "gw.pid"
        pidfile.write_text(f"{child.pid}\n")
        assert cli.main(["reload", str(pidfile)]) == 0
        assert child.wait(10) == 7
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(5)
    assert cli.main(["reload", str(tmp_path / "missing.pid")]) == 1
    assert "missing.pid" in capsys.readouterr().err


def test_reload_of_a_process_that_is_gone_fails_with_its_reason(
        capsys: pytest.CaptureFixture[str]) -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(10)
    assert cli.main(["reload", str(child.pid)]) == 1
    assert "No such process" in capsys.readouterr().err
