"""The admission accept-options: parsing, and one handshake timeout per shared port."""

from __future__ import annotations

import pytest

from kgateway.config import ConfigError
from kgateway.config.options import parse_rate
from tests.unit.fakes import load


@pytest.mark.parametrize("text, rate", [("10", 10.0), ("0.5", 0.5), ("10/sec", 10.0),
                                        ("600/min", 10.0), (" 3 / s ", 3.0), ("0", 0.0)])
def test_rates_per_second_or_minute(text: str, rate: float) -> None:
    assert parse_rate(text) == pytest.approx(rate)


@pytest.mark.parametrize("text", ["fast", "-1", "10/hour", "nan", "inf", ""])
def test_bad_rates_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="expected a rate"):
        parse_rate(text)


def service(path: str, options: str = "", scheme: str = "ws") -> str:
    return (f"<service><name>{path}</name><accept>{scheme}://localhost:8000/{path}</accept>"
            f"<type>echo</type><accept-options>{options}</accept-options></service>")


def test_services_sharing_a_port_must_agree_on_the_http_handshake_timeout(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError) as info:
        load(tmp_path, service("a") + service(
            "b", "<http.handshake.timeout>30sec</http.handshake.timeout>"))
    (problem,) = info.value.problems
    assert "shares port 8000 with service 'a' but not its accept-option " \
           "http.handshake.timeout" in problem.message
    # Per-service limits may differ on one port.
    cfg = load(tmp_path, service("a", "<connection.limit>5</connection.limit>") + service(
        "b", "<handshake.rate>2</handshake.rate>"))
    assert [s.accept_options["connection.limit"] for s in cfg.services] == [5, 10_000]


def test_a_bad_limit_names_its_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError) as info:
        load(tmp_path, service("a", "<connection.limit.per.address>-1"
                                    "</connection.limit.per.address>"))
    (problem,) = info.value.problems
    assert "bad value for <connection.limit.per.address>: expected 0 or more" in problem.message
