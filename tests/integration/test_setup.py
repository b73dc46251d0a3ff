"""The first hour: scripts/system-deps.sh and `make run`'s order on a machine without npm.

The script runs in its --dry-run mode (it only reports what it would install) with a PATH
that holds the few tools it uses but no npm, as on a fresh Debian 12; `make -n run` shows
that the system step (which installs npm) comes before anything that runs npm.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.helpers import ROOT

SCRIPT = os.path.join(ROOT, "scripts", "system-deps.sh")


def _path_without_npm(folder: str) -> str:
    """A PATH of symlinks to what system-deps.sh runs, and nothing else (no npm, no node)."""
    for tool in ("bash", "dpkg-query", "id", "cat", "printf", "env"):
        found = shutil.which(tool)
        if found:
            os.symlink(found, os.path.join(folder, tool))
    return folder


@pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="Debian only")
def test_without_npm_on_path_the_run_set_would_install_npm(tmp_path: object) -> None:
    path = _path_without_npm(str(tmp_path))
    out = subprocess.run([os.path.join(path, "bash"), SCRIPT, "run", "--dry-run"],
                         env={"PATH": path}, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "would install:" in out.stdout
    assert "npm" in out.stdout.split("would install:")[1].split()


@pytest.mark.skipif(shutil.which("npm") is None or shutil.which("dpkg-query") is None,
                    reason="needs npm and Debian")
def test_with_npm_on_path_npm_is_not_installed_again() -> None:
    out = subprocess.run([SCRIPT, "run", "--dry-run"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert "npm" not in out.stdout.split()


def test_the_run_set_leaves_test_only_packages_to_the_test_set() -> None:
    with open(SCRIPT) as f:
        text = f.read()
    run_line = next(line for line in text.splitlines() if line.startswith("RUN_PACKAGES="))
    test_line = next(line for line in text.splitlines() if line.startswith("TEST_PACKAGES="))
    for test_only in ("chromium", "haproxy", "nginx-light"):
        assert test_only not in run_line and test_only in test_line


def test_make_run_installs_system_packages_before_using_npm() -> None:
    out = subprocess.run(["make", "-n", "--no-print-directory", "run"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    system = text.index("scripts/system-deps.sh run")
    vendor = text.index("vendor-web.sh")
    assert system < text.index("[venv]") < vendor  # python3-venv comes with the system step
    assert "npm ci" not in text[:system]
    assert "kgateway run" in text[vendor:]
    assert "system-deps.sh test" not in text
