"""bench.relay works end to end: a tiny --quick run against the naive relay only.

Nothing here is timed or compared: the figures must exist and be positive, that is all.
The client frames the driver builds by hand are checked by websockets' own frame parser.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from bench.relay_driver import client_frame
from tests.helpers import ROOT


@pytest.mark.parametrize("size", [0, 125, 126, 4096, 65535, 65536, 70000])
def test_client_frame_is_a_masked_binary_frame_websockets_can_read(size: int) -> None:
    payload = bytes(i % 251 for i in range(size))
    reader = StreamReader()
    reader.feed_data(client_frame(payload, b"\x01\x80\xfe\x37"))
    reader.feed_eof()
    parser = Frame.parse(reader.read_exact, mask=True)
    with pytest.raises(StopIteration) as done:
        next(parser)
    frame = done.value.value
    assert (frame.opcode, frame.fin, frame.data) == (Opcode.BINARY, True, payload)


def test_quick_run_against_the_naive_relay_writes_figures(tmp_path: str) -> None:
    out = os.path.join(tmp_path, "out")
    run = subprocess.run(
        [sys.executable, "-m", "bench.relay", "--quick", "--only", "up64k", "--only",
         "mem_echo", "--systems", "naive", "--out", out, "--no-plots"],
        cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "round 1/1 naive" in run.stdout  # progress lines as it goes
    with open(os.path.join(out, "relay.json")) as f:
        report = json.load(f)
    assert {"command", "machine", "settings", "scenarios"} <= report.keys()
    assert {"cpu", "cores", "kernel", "python", "twisted", "autobahn", "when"} <= \
        report["machine"].keys()
    assert report["settings"] == {"rounds": 1, "seconds": 1.0, "quick": True}
    assert set(report["scenarios"]) == {"up64k", "mem_echo"}
    up = report["scenarios"]["up64k"]
    assert (up["unit"], up["higher_is_better"], list(up["systems"])) == ("MB/s", True, ["naive"])
    naive = up["systems"]["naive"]
    assert naive["median"] > 0 and len(naive["runs"]) == 1
    assert naive["driver_cpu_pct"] > 0 and naive["server_cpu_pct"] > 0
    memory = report["scenarios"]["mem_echo"]["systems"]["naive"]
    assert memory["median"] > 0
    assert memory["details"][0]["connections"] == 500
    with open(os.path.join(out, "relay.md")) as f:
        table = f.read()
    assert "| figure | kgateway | websockify | naive relay |" in table
    assert report["machine"]["cpu"] in table
