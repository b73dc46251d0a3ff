"""Property substitution is bounded: doubling properties (a "billion laughs") are refused
quickly, naming the file, the line and the property, before the memory is spent."""

from __future__ import annotations

import textwrap
import time

import pytest

from kgateway.config import ConfigError, env_name
from kgateway.config.loader import MAX_EXPANDED_TOTAL, MAX_EXPANDED_VALUE
from kgateway.services import load_config

NS = 'xmlns="http://xmlns.kaazing.org/2016/06/gateway"'
ECHO = "<service><accept>ws://localhost:8000/echo</accept><type>echo</type></service>"


def write(tmp_path, body: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "gateway.xml"
    path.write_text(f'<?xml version="1.0"?>\n<gateway-config {NS}>\n'
                    + textwrap.dedent(body).strip("\n") + "\n</gateway-config>\n")
    return path


def bomb(n: int = 39) -> str:
    """The attacker's file: p0 = "ab", p(i) = p(i-1) twice; 2 * 2**38 bytes if expanded."""
    props = ["<property><name>p0</name><value>ab</value></property>"]
    props += [f"<property><name>p{i}</name><value>${{p{i - 1}}}${{p{i - 1}}}</value></property>"
              for i in range(1, n)]
    return "<properties>\n" + "\n".join(props) + "\n</properties>\n" + \
        ECHO.replace("<type>", f"<description>${{p{n - 1}}}</description><type>")


def test_doubling_properties_are_refused_in_well_under_a_second(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = write(tmp_path, bomb())
    assert path.stat().st_size < 3000
    started = time.monotonic()
    with pytest.raises(ConfigError) as info:
        load_config(str(path), {}, {})
    elapsed = time.monotonic() - started
    assert elapsed < 0.5, elapsed
    (problem,) = info.value.problems  # one problem, not one per later property
    # p0 is 2 characters, so p15 is exactly 64 KiB and p16 the first over; its <property> is
    # on line 20 (line 1 the XML declaration, 2 <gateway-config>, 3 <properties>, p0 on 4).
    assert problem.file == str(path)
    assert problem.line == 4 + 16
    assert "property 'p16' expands to more than 64 KiB" in problem.message
    assert f"{path}:20:" in str(info.value)


def test_a_value_just_under_the_bound_is_fine_and_one_just_over_is_not(tmp_path) -> None:  # type: ignore[no-untyped-def]
    half = MAX_EXPANDED_VALUE // 2
    body = ("<properties><property><name>h</name><value>" + "x" * half
            + "</value></property>\n<property><name>full</name><value>${h}${h}</value>"
            "</property>\n<property><name>over</name><value>${h}${h}y</value></property>"
            "</properties>\n" + ECHO)
    with pytest.raises(ConfigError) as info:
        load_config(str(write(tmp_path, body)), {}, {})
    (problem,) = info.value.problems
    assert "property 'over' expands to more than" in problem.message
    body = body.replace("${h}${h}y", "${h}")
    cfg = load_config(str(write(tmp_path, body)), {}, {})
    assert len(cfg.properties["full"]) == MAX_EXPANDED_VALUE


def test_environment_and_D_values_are_bounded_where_they_are_used(tmp_path) -> None:  # type: ignore[no-untyped-def]
    big = "z" * (MAX_EXPANDED_VALUE // 2 + 1)
    body = ECHO.replace("<type>", "<description>${big}${big}</description><type>")
    path = write(tmp_path, body)
    for overrides, environ in (({"big": big}, {}), ({}, {env_name("big"): big})):
        with pytest.raises(ConfigError) as info:
            load_config(str(path), overrides, environ)
        (problem,) = info.value.problems
        assert problem.line == 3
        assert "the text of <description> expands to more than 64 KiB" in problem.message


def test_many_elements_each_under_the_bound_hit_the_total(tmp_path) -> None:  # type: ignore[no-untyped-def]
    chunk = MAX_EXPANDED_VALUE - 10
    n = MAX_EXPANDED_TOTAL // chunk + 2
    services = "\n".join(
        ECHO.replace("8000/echo", f"8000/e{i}").replace("<type>",
                                                        "<description>${c}</description><type>")
        for i in range(n))
    body = ("<properties><property><name>c</name><value>" + "c" * chunk
            + "</value></property></properties>\n" + services)
    with pytest.raises(ConfigError) as info:
        load_config(str(write(tmp_path, body)), {}, {})
    messages = [p.message for p in info.value.problems]
    assert len(messages) == 1 and "more than 1 MiB of text in all" in messages[0]
