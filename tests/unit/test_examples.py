"""Every configuration in etc/examples passes ``kgateway check`` with the documented certs."""

from __future__ import annotations

import glob
import os
import shutil

import pytest

from kgateway import cli
from tests.helpers import ROOT

EXAMPLES = os.path.join(ROOT, "etc", "examples")
CONFIGS = sorted(glob.glob(os.path.join(EXAMPLES, "*", "*.xml")))
#: the command in etc/examples/README.md
CERT_NAMES = ["dmz.example.com", "internal.example.com", "gateway-a.example.com",
              "gateway-b.example.com", "--alt", "localhost", "--alt", "127.0.0.1"]


@pytest.fixture(scope="module")
def examples(tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = str(tmp_path_factory.mktemp("examples"))
    shutil.copytree(EXAMPLES, folder, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("certs"))
    assert cli.main(["certs", os.path.join(folder, "certs"), *CERT_NAMES]) == 0
    return folder


def test_every_topology_has_a_readme_with_a_diagram() -> None:
    for topology in ("dmz-to-trusted", "enterprise-shield", "vpc"):
        with open(os.path.join(EXAMPLES, topology, "README.md")) as f:
            text = f.read()
        assert "-->" in text or "==>" in text, topology
    with open(os.path.join(EXAMPLES, "README.md")) as f:
        assert "kgateway certs etc/examples/certs " + " ".join(CERT_NAMES[:4]) in \
            f.read().replace("\\\n        ", "")


@pytest.mark.parametrize("config", [os.path.relpath(c, EXAMPLES) for c in CONFIGS])
def test_example_passes_kgateway_check(examples: str, config: str,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["check", os.path.join(examples, config)]) == 0, capsys.readouterr().err


def test_there_are_examples() -> None:
    assert len(CONFIGS) >= 6


def test_workers_refuse_the_shield_dmz_side_and_run_the_internal_side(
        examples: str, capsys: pytest.CaptureFixture[str]) -> None:
    shield = os.path.join(examples, "enterprise-shield")
    dmz, internal = os.path.join(shield, "dmz.xml"), os.path.join(shield, "internal.xml")
    assert cli.main(["check", dmz, "--workers", "1"]) == 0
    capsys.readouterr()
    assert cli.main(["check", dmz, "--workers", "2"]) == 1
    err = capsys.readouterr().err
    assert "--workers cannot run the DMZ side of Enterprise Shield (reverse+wss://" in err
    assert "run this gateway as one process" in err
    assert cli.main(["check", internal, "--workers", "2"]) == 0, capsys.readouterr().err
