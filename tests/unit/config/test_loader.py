"""The gateway-config loader: substitution, defaults, and every error class with its line."""

from __future__ import annotations

import os
import textwrap

import pytest

from kgateway.config import ConfigError, env_name, parse_duration, parse_size, parse_uri
from kgateway.services import load_config
from tests.helpers import ROOT

NS = 'xmlns="http://xmlns.kaazing.org/2016/06/gateway"'


def load(tmp_path, body: str, *, ns: str = NS, overrides=None, environ=None):  # type: ignore[no-untyped-def]
    path = tmp_path / "gateway.xml"
    path.write_text(f'<?xml version="1.0"?>\n<gateway-config {ns}>\n'
                    + textwrap.dedent(body).strip("\n") + "\n</gateway-config>\n")
    return load_config(str(path), overrides or {}, environ or {})


def problems(tmp_path, body: str, **kw) -> list[tuple[int, str]]:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError) as info:
        load(tmp_path, body, **kw)
    return [(p.line, p.message) for p in info.value.problems]


ECHO = "<service><accept>ws://localhost:8000/echo</accept><type>echo</type></service>"


def test_minimal_echo_service_with_and_without_namespace(tmp_path) -> None:  # type: ignore[no-untyped-def]
    for ns in (NS, ""):
        cfg = load(tmp_path, ECHO, ns=ns)
        (svc,) = cfg.services
        assert (svc.type, svc.name, str(svc.accepts[0])) == ("echo", "echo#1",
                                                             "ws://localhost:8000/echo")
        assert svc.accepts[0].path == "/echo" and svc.accepts[0].port == 8000


PROPS = """
<properties>
  <property><name>gateway.hostname</name><value>example.com</value></property>
  <property><name>gateway.port</name><value>8000</value></property>
  <property><name>url</name><value>ws://${gateway.hostname}:${gateway.port}</value></property>
</properties>
<service><accept>${url}/echo</accept><type>echo</type>
  <description>literal $${gateway.hostname}</description></service>
"""


def test_properties_are_substituted_with_precedence_D_then_environment_then_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert str(load(tmp_path, PROPS).services[0].accepts[0]) == "ws://example.com:8000/echo"
    env = {env_name("gateway.hostname"): "env.example", env_name("gateway.port"): "9000"}
    cfg = load(tmp_path, PROPS, environ=env)
    assert str(cfg.services[0].accepts[0]) == "ws://env.example:9000/echo"
    cfg = load(tmp_path, PROPS, environ=env, overrides={"gateway.port": "9100"})
    assert str(cfg.services[0].accepts[0]) == "ws://env.example:9100/echo"
    assert cfg.services[0].description == "literal ${gateway.hostname}"


def test_environment_variable_naming() -> None:
    assert env_name("gateway.hostname") == "KGATEWAY_GATEWAY_HOSTNAME"
    assert env_name("backend-host.x") == "KGATEWAY_BACKEND_HOST_X"


def test_unresolved_property_names_the_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    found = problems(tmp_path, """
        <service>
          <accept>ws://${nowhere}:8000/echo</accept>
          <type>echo</type>
        </service>""")
    assert found[0][0] == 4 and "unresolved property ${nowhere}" in found[0][1]
    assert "KGATEWAY_NOWHERE" in found[0][1]


def test_property_cycle_is_an_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    found = problems(tmp_path, """
        <properties>
          <property><name>a</name><value>${b}</value></property>
          <property><name>b</name><value>${a}</value></property>
        </properties>
        """ + ECHO)
    assert any("refers to itself" in m for _, m in found)


@pytest.mark.parametrize("body, line, text", [
    ("<service><accept>ws://h:1/e</accept><type>echo</type><bogus/></service>",
     3, "unknown element <bogus> in <service>"),
    ("<nonsense/>" + ECHO, 3, "unknown element <nonsense> in <gateway-config>"),
    ("<service><accept>ws://h:1/e</accept><type>teleport</type></service>",
     3, "unknown service type 'teleport'"),
    ("<service><accept>wx://h:1/e</accept><type>echo</type></service>", 3, "unknown scheme"),
    ("<service><accept>tcp://h/e</accept><type>echo</type></service>", 3, "needs a port"),
    ("<service><accept>ws://h:99999/e</accept><type>echo</type></service>", 3, "bad URI"),
    ("<service><accept>tcp://h:1</accept><type>proxy</type></service>", 3, "needs a <connect>"),
    ("<service><accept>ws://h:1/e</accept><connect>tcp://h:2</connect><type>echo</type>"
     "</service>", 3, "takes no <connect>"),
    ("<service><type>echo</type></service>", 3, "has no <accept>"),
    ("<service><accept>ws://h:1/e</accept></service>", 3, "has no <type>"),
    ("<service><accept>http://h:1/</accept><type>echo</type></service>",
     3, "cannot accept http://"),
    ("<service><accept>ws://h:1/e</accept><type>echo</type><accept-options>"
     "<ws.maximum.message.size>lots</ws.maximum.message.size></accept-options></service>",
     3, "bad value for <ws.maximum.message.size>"),
    ("<service><accept>ws://h:1/e</accept><type>echo</type><accept-options>"
     "<ws.colour>red</ws.colour></accept-options></service>", 3, "unknown accept-option"),
    ("<service><accept>tcp://h:1</accept><connect>tcp://h:2</connect><type>proxy</type>"
     "<properties><maximum.pending.bytes>-1</maximum.pending.bytes></properties></service>",
     3, "bad value for <maximum.pending.bytes>"),
    ("<service><accept>tcp://h:1</accept><connect>tcp://h:2</connect><type>proxy</type>"
     "<properties><colour>red</colour></properties></service>", 3, "unknown property <colour>"),
    ("<service><accept>http://h:1/</accept><type>directory</type></service>",
     3, "needs property <directory>"),
    ("<service><accept>ws://h:1/e</accept><type>echo</type><name>a</name><name>b</name>"
     "</service>", 3, "<name> given twice"),
])
def test_each_error_names_its_line(tmp_path, body: str, line: int, text: str) -> None:  # type: ignore[no-untyped-def]
    found = problems(tmp_path, body)
    assert any(text in m for _, m in found), found
    assert [ln for ln, m in found if text in m] == [line]


def test_duplicate_accept_is_reported_on_the_second_one(tmp_path) -> None:  # type: ignore[no-untyped-def]
    found = problems(tmp_path, """
        <service><accept>ws://localhost:8000/echo</accept><type>echo</type></service>
        <service>
          <accept>ws://localhost:8000/echo</accept>
          <type>echo</type>
        </service>""")
    assert found == [(5, "duplicate accept ws://localhost:8000/echo: already accepted by "
                         "service 'echo#1'")]


def test_http_and_raw_tcp_cannot_share_a_port(tmp_path) -> None:  # type: ignore[no-untyped-def]
    found = problems(tmp_path, """
        <service><accept>ws://localhost:8000/echo</accept><type>echo</type></service>
        <service><accept>tcp://localhost:8000</accept><type>echo</type></service>""")
    assert found[0][0] == 4 and "shares port 8000" in found[0][1]


def test_services_share_a_port_by_path(tmp_path) -> None:  # type: ignore[no-untyped-def]
    web = tmp_path / "web"
    web.mkdir()
    cfg = load(tmp_path, """
        <service><accept>http://localhost:8000/</accept><type>directory</type>
          <properties><directory>web</directory></properties></service>
        <service><accept>ws://localhost:8000/echo</accept><type>echo</type></service>
        <service><accept>ws://localhost:8000/other</accept><type>echo</type></service>""")
    assert [s.type for s in cfg.services] == ["directory", "echo", "echo"]
    assert cfg.services[0].settings["directory"] == str(web)


def test_every_problem_is_reported_at_once(tmp_path) -> None:  # type: ignore[no-untyped-def]
    found = problems(tmp_path, """
        <service><accept>ws://h:1/e</accept><type>teleport</type></service>
        <service><accept>ws://${x}:1/e</accept><type>echo</type></service>
        <service><accept>tcp://h:2</accept><type>proxy</type></service>""")
    assert [ln for ln, _ in found] == [4, 3, 5]


def test_service_defaults_merge_under_each_services_own_options(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = load(tmp_path, """
        <service-defaults>
          <accept-options><ws.maximum.message.size>64k</ws.maximum.message.size>
                          <ws.inactivity.timeout>30sec</ws.inactivity.timeout></accept-options>
          <connect-options><connect.timeout>3sec</connect.timeout></connect-options>
        </service-defaults>
        <service><accept>ws://h:1/a</accept><type>echo</type>
          <accept-options><ws.maximum.message.size>1MiB</ws.maximum.message.size></accept-options>
        </service>
        <service><accept>ws://h:1/b</accept><type>echo</type></service>""")
    a, b = cfg.services
    assert a.accept_options["ws.maximum.message.size"] == 1024 * 1024
    assert b.accept_options["ws.maximum.message.size"] == 64 * 1024
    assert a.accept_options["ws.inactivity.timeout"] == b.accept_options["ws.inactivity.timeout"] == 30
    assert a.connect_options["connect.timeout"] == 3


def test_external_entities_are_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    path = tmp_path / "evil.xml"
    path.write_text(f'<?xml version="1.0"?>\n<!DOCTYPE g [<!ENTITY x SYSTEM "file://{secret}">]>\n'
                    '<gateway-config><service><accept>ws://h:1/&x;</accept><type>echo</type>'
                    '</service></gateway-config>')
    with pytest.raises(ConfigError) as info:
        load_config(str(path), {}, {})
    assert "forbidden XML construct" in str(info.value)
    assert "top secret" not in str(info.value)


def test_entity_expansion_bomb_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "bomb.xml"
    path.write_text('<?xml version="1.0"?>\n<!DOCTYPE g [<!ENTITY a "aaaaaaaaaa">'
                    '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>\n<gateway-config>&b;'
                    '</gateway-config>')
    with pytest.raises(ConfigError, match="forbidden XML construct"):
        load_config(str(path), {}, {})


def test_malformed_xml_names_the_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    found = problems(tmp_path, "<service>\n<accept>ws://h:1/e</accept>\n<type>echo</typo>\n"
                               "</service>")
    assert found[0][0] == 5 and "not well-formed" in found[0][1]


def test_foreign_namespace_is_an_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    found = problems(tmp_path, ECHO, ns='xmlns="http://example.com/other"')
    assert found[0][0] == 2 and "unknown XML namespace" in found[0][1]


def test_missing_file_is_a_clear_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match="cannot read configuration: No such file"):
        load_config(str(tmp_path / "missing.xml"), {}, {})


def test_a_missing_keystore_file_names_the_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    found = problems(tmp_path, """
        <security>
          <keystore>
            <certificate-file>nope.pem</certificate-file>
          </keystore>
        </security>""" + ECHO)
    assert found[0][0] == 5 and "no such file" in found[0][1]


def test_tls_accept_without_a_keystore_is_an_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    found = problems(tmp_path, "<service><accept>wss://h:1/e</accept><type>echo</type>"
                               "</service>")
    assert found[0][0] == 3 and "<security><keystore>" in found[0][1]


def test_units() -> None:
    assert parse_duration("30sec") == 30 and parse_duration("500ms") == 0.5
    assert parse_duration("2min") == 120 and parse_duration("7") == 7
    assert parse_size("64k") == 65536 and parse_size("1MiB") == 1 << 20
    with pytest.raises(ValueError):
        parse_duration("soon")
    with pytest.raises(ValueError):
        parse_size("-1")


def test_uri_defaults() -> None:
    assert parse_uri("wss://example.com/x").port == 443
    assert parse_uri("ws://example.com").path == "/"
    assert parse_uri("tcp://[::1]:5672").authority == "[::1]:5672"
    with pytest.raises(ValueError, match="takes no path"):
        parse_uri("tcp://h:1/path")


def test_config_is_immutable(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = load(tmp_path, ECHO)
    with pytest.raises(AttributeError):
        cfg.services[0].name = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        cfg.properties["a"] = "b"  # type: ignore[index]


def test_default_configuration_is_valid() -> None:
    cfg = load_config(os.path.join(ROOT, "etc", "gateway.xml"), {}, {})
    assert {"directory", "echo"} <= {s.type for s in cfg.services}
