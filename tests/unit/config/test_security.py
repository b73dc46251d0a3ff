"""The <security> model, TLS accept/connect options and Enterprise Shield config checks."""

from __future__ import annotations

import textwrap

import pytest

from kgateway.certs import make_certificate
from kgateway.config import ConfigError, parse_uri
from kgateway.services import load_config

NS = 'xmlns="http://xmlns.kaazing.org/2016/06/gateway"'


def load(tmp_path, body: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "gateway.xml"
    path.write_text(f'<?xml version="1.0"?>\n<gateway-config {NS}>\n'
                    + textwrap.dedent(body).strip("\n") + "\n</gateway-config>\n")
    return load_config(str(path), {}, {})


def messages(tmp_path, body: str) -> list[str]:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError) as info:
        load(tmp_path, body)
    return [p.message for p in info.value.problems]


@pytest.fixture
def pem(tmp_path) -> str:  # type: ignore[no-untyped-def]
    cert, key = make_certificate(str(tmp_path), "gw.test")
    return (f"<security><keystore><certificate-file>{cert}</certificate-file>"
            f"<key-file>{key}</key-file></keystore>"
            f"<truststore><file>{tmp_path / 'ca.pem'}</file></truststore></security>")


def test_reverse_uri_parses_with_a_path() -> None:
    uri = parse_uri("reverse+wss://dmz:1443/shield/echo")
    assert (uri.scheme, uri.port, uri.path, uri.is_reverse, uri.is_tls) == (
        "reverse+wss", 1443, "/shield/echo", True, True)
    with pytest.raises(ValueError, match="needs a port"):
        parse_uri("reverse+wss://dmz/shield")


def test_tls_accept_options_parse(tmp_path, pem) -> None:  # type: ignore[no-untyped-def]
    cfg = load(tmp_path, pem + """
      <service><accept>wss://localhost:9443/e</accept><type>echo</type><accept-options>
        <ssl.protocols>TLSv1.3, TLSv1.2</ssl.protocols>
        <ssl.ciphers>ECDHE+AESGCM:!aNULL</ssl.ciphers>
        <ssl.verify-client>Required</ssl.verify-client>
      </accept-options></service>""")
    options = cfg.services[0].accept_options
    assert options["ssl.protocols"] == ("TLSv1.2", "TLSv1.3")
    assert options["ssl.ciphers"] == "ECDHE+AESGCM:!aNULL"
    assert options["ssl.verify-client"] == "required"


def test_bad_tls_option_values_are_reported(tmp_path, pem) -> None:  # type: ignore[no-untyped-def]
    found = messages(tmp_path, pem + """
      <service><accept>wss://localhost:9443/e</accept><type>echo</type><accept-options>
        <ssl.protocols>SSLv3</ssl.protocols>
        <ssl.ciphers>NOPE-NOTHING</ssl.ciphers>
        <ssl.verify-client>sometimes</ssl.verify-client>
      </accept-options></service>""")
    assert any("insecure protocol 'SSLv3'" in m for m in found), found
    assert any("no usable cipher" in m for m in found), found
    assert any("none, optional or required" in m for m in found), found


def test_verify_client_needs_a_truststore(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cert, key = make_certificate(str(tmp_path), "gw.test")
    found = messages(tmp_path, f"""
      <security><keystore><certificate-file>{cert}</certificate-file>
        <key-file>{key}</key-file></keystore></security>
      <service><accept>wss://localhost:9443/e</accept><type>echo</type><accept-options>
        <ssl.verify-client>optional</ssl.verify-client></accept-options></service>""")
    assert any("add <security><truststore>" in m for m in found), found


def test_java_keystore_types_point_to_the_conversion(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "keystore.db").write_bytes(b"x")
    found = messages(tmp_path, """
      <security><keystore><type>JCEKS</type><file>keystore.db</file>
        <password>changeit</password></keystore></security>
      <service><accept>ws://localhost:8000/e</accept><type>echo</type></service>""")
    assert any("keytool -importkeystore" in m for m in found), found


def test_pkcs12_keystore_and_password_file_are_read(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "ks.p12").write_bytes(b"x")
    (tmp_path / "ks.pw").write_text("secret\n")
    cfg = load(tmp_path, """
      <security><keystore><type>PKCS12</type><file>ks.p12</file>
        <password-file>ks.pw</password-file></keystore></security>
      <service><accept>wss://localhost:9443/e</accept><type>echo</type></service>""")
    assert cfg.security.keystore_file == str(tmp_path / "ks.p12")
    assert cfg.security.keystore_password == "secret"
    assert cfg.security.has_identity


def test_shield_needs_keystore_and_truststore(tmp_path) -> None:  # type: ignore[no-untyped-def]
    found = messages(tmp_path, """
      <service><accept>reverse+wss://dmz:1443/shield/e</accept><type>echo</type></service>""")
    assert any("add <security><truststore>" in m for m in found), found
    assert any("needs a certificate" in m or "add <security><keystore>" in m for m in found)


def test_shield_on_both_sides_validates(tmp_path, pem) -> None:  # type: ignore[no-untyped-def]
    cfg = load(tmp_path, pem + """
      <service><name>dmz</name><accept>wss://localhost:443/e</accept>
        <connect>reverse+wss://localhost:1443/shield/e</connect><type>proxy</type>
        <connect-options><reverse.timeout>3sec</reverse.timeout>
          <reverse.allowed.names>internal.test</reverse.allowed.names></connect-options></service>
      <service><name>inside</name><accept>reverse+wss://localhost:1443/shield/e</accept>
        <type>echo</type><accept-options>
          <reverse.prepared.connection.count>3</reverse.prepared.connection.count>
          <reverse.retry.maximum.interval>1min</reverse.retry.maximum.interval>
        </accept-options></service>""")
    dmz, inside = cfg.services
    assert dmz.connect_options["reverse.timeout"] == 3.0
    assert inside.accept_options["reverse.prepared.connection.count"] == 3
    assert inside.accept_options["reverse.retry.maximum.interval"] == 60.0


def test_backplane_cannot_share_a_port_with_other_tls_settings(tmp_path, pem) -> None:  # type: ignore[no-untyped-def]
    found = messages(tmp_path, pem + """
      <service><name>public</name><accept>wss://localhost:1443/e</accept><type>echo</type></service>
      <service><name>dmz</name><accept>ws://localhost:80/e</accept>
        <connect>reverse+wss://localhost:1443/shield/e</connect><type>proxy</type></service>""")
    assert any("Enterprise Shield backplane needs a port of its own" in m for m in found), found


def test_backplane_verify_client_must_stay_required(tmp_path, pem) -> None:  # type: ignore[no-untyped-def]
    found = messages(tmp_path, pem + """
      <service><accept>ws://localhost:80/e</accept>
        <connect>reverse+wss://localhost:1443/shield/e</connect><type>proxy</type>
        <connect-options><ssl.verify-client>none</ssl.verify-client></connect-options></service>""")
    assert any("always requires client certificates" in m for m in found), found


def test_udp_accept_and_connect(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = load(tmp_path, """
      <service><accept>udp://localhost:5353</accept><connect>ws://b:80/dns</connect>
        <type>proxy</type><accept-options><udp.idle.timeout>5sec</udp.idle.timeout>
        </accept-options></service>""")
    assert cfg.services[0].accept_options["udp.idle.timeout"] == 5.0


def realm_xml(users: str, extra: str = "", scheme: str = "Basic") -> str:
    return (f"<security><realm><name>demo</name><authentication>"
            f"<http-challenge-scheme>{scheme}</http-challenge-scheme>{extra}<login-modules>"
            f"<login-module><type>file</type><success>required</success>"
            f"<options><file>{users}</file></options></login-module>"
            f"</login-modules></authentication></realm></security>")


@pytest.fixture
def users(tmp_path) -> str:  # type: ignore[no-untyped-def]
    path = tmp_path / "users"
    path.write_text("# kgateway password file\n")
    return str(path)


def test_a_realm_and_a_constrained_service_load(tmp_path, users) -> None:  # type: ignore[no-untyped-def]
    cfg = load(tmp_path, realm_xml(users) + """
        <service><accept>ws://h:1/e</accept><type>echo</type><realm-name>demo</realm-name>
          <authorization-constraint><require-role>ops</require-role>
            <require-role>admins</require-role></authorization-constraint></service>""")
    realm = cfg.security.realms["demo"]
    assert realm.settings.challenge_scheme.value == "Basic"
    assert realm.settings.login_modules[0].settings.path == users  # type: ignore[union-attr]
    service = cfg.services[0]
    assert service.realm_name == "demo" and service.required_roles == ("ops", "admins")


@pytest.mark.parametrize("body, expected", [
    ("<service><accept>ws://h:1/e</accept><type>echo</type><realm-name>nope</realm-name>"
     "</service>", "realm-name 'nope' names no <security><realm> (realms: demo)"),
    ("<service><accept>ws://h:1/e</accept><type>echo</type><authorization-constraint>"
     "<require-role>ops</require-role></authorization-constraint></service>",
     "has an <authorization-constraint> but no <realm-name>"),
    ("<service><accept>tcp://h:1</accept><type>echo</type><realm-name>demo</realm-name>"
     "</service>", "cannot authenticate clients of tcp://h:1"),
    ("<service><accept>ws://h:1/e</accept><type>echo</type><realm-name>demo</realm-name>"
     "<authorization-constraint><require-group>x</require-group></authorization-constraint>"
     "</service>", "<require-group> in <authorization-constraint> is not supported"),
])
def test_security_settings_that_cannot_be_enforced_are_errors(tmp_path, users, body: str,
                                                              expected: str) -> None:  # type: ignore[no-untyped-def]
    found = messages(tmp_path, realm_xml(users) + body)
    assert any(expected in m for m in found), found


def test_protocol_services_may_authenticate_stream_clients(tmp_path, users) -> None:  # type: ignore[no-untyped-def]
    cfg = load(tmp_path, realm_xml(users) + """
        <service><accept>tcp://h:5672</accept><connect>tcp://b:5672</connect>
          <type>amqp.proxy</type><realm-name>demo</realm-name>
          <properties><broker.login>guest</broker.login><broker.passcode>guest</broker.passcode>
          </properties></service>""")
    assert cfg.services[0].settings["broker.login"] == "guest"


def test_mapped_broker_credentials_need_a_realm(tmp_path) -> None:  # type: ignore[no-untyped-def]
    found = messages(tmp_path, """
        <service><accept>ws://h:1/amqp</accept><connect>tcp://b:5672</connect>
          <type>amqp.proxy</type><properties><broker.login>guest</broker.login>
          <broker.passcode>guest</broker.passcode></properties></service>""")
    assert any("broker.login replaces the credentials" in m for m in found), found


@pytest.mark.parametrize("extra, expected", [
    ("<authorization-mode>challenge</authorization-mode>", "<authorization-mode> is not "
                                                           "supported"),
    ("<http-query-parameter>t</http-query-parameter>", "need the Bearer scheme"),
])
def test_unsupported_or_inconsistent_realms_are_errors(tmp_path, users, extra: str,
                                                       expected: str) -> None:  # type: ignore[no-untyped-def]
    found = messages(tmp_path, realm_xml(users, extra) + "<service><accept>ws://h:1/e</accept>"
                                                           "<type>echo</type></service>")
    assert any(expected in m for m in found), found


def test_an_unknown_login_module_type_is_an_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    found = messages(tmp_path, "<security><realm><name>k</name><authentication>"
                               "<login-modules><login-module><type>kerberos5</type>"
                               "</login-module></login-modules></authentication></realm>"
                               "</security><service><accept>ws://h:1/e</accept><type>echo</type>"
                               "</service>")
    assert any("kerberos5" in m for m in found), found


def test_a_backplane_must_name_the_internal_gateways_it_accepts(tmp_path, pem) -> None:  # type: ignore[no-untyped-def]
    """Fail-closed: no reverse.allowed.names, no start."""
    found = messages(tmp_path, pem + """
      <service><accept>ws://localhost:80/e</accept>
        <connect>reverse+wss://localhost:1443/shield/e</connect><type>proxy</type></service>""")
    assert any("needs the connect-option reverse.allowed.names" in m for m in found), found
    cfg = load(tmp_path, pem + """
      <service><accept>ws://localhost:80/e</accept>
        <connect>reverse+wss://localhost:1443/shield/e</connect><type>proxy</type>
        <connect-options><reverse.allowed.names>Internal1.corp, internal2.corp
        </reverse.allowed.names></connect-options></service>""")
    assert cfg.services[0].connect_options["reverse.allowed.names"] == (
        "internal1.corp", "internal2.corp")
    found = messages(tmp_path, pem + """
      <service><accept>ws://localhost:80/e</accept>
        <connect>reverse+wss://localhost:1443/shield/e</connect><type>proxy</type>
        <connect-options><reverse.allowed.names>*, x</reverse.allowed.names></connect-options>
      </service>""")
    assert any("stands alone" in m for m in found), found


def test_several_keystores_one_per_host_name(tmp_path) -> None:  # type: ignore[no-untyped-def]
    a = make_certificate(str(tmp_path), "a.example")
    b = make_certificate(str(tmp_path), "b.example")
    cfg = load(tmp_path, f"""<security>
      <keystore><certificate-file>{a[0]}</certificate-file><key-file>{a[1]}</key-file></keystore>
      <keystore><certificate-file>{b[0]}</certificate-file><key-file>{b[1]}</key-file></keystore>
      </security>
      <service><accept>wss://localhost:9443/e</accept><type>echo</type></service>""")
    assert cfg.security.certificate_file == a[0]
    assert [k.certificate_file for k in cfg.security.more_keystores] == [b[0]]


def test_ssl_crl_needs_client_certificates_and_a_file(tmp_path, pem) -> None:  # type: ignore[no-untyped-def]
    found = messages(tmp_path, pem + f"""
      <service><accept>wss://localhost:9443/e</accept><type>echo</type>
        <accept-options><ssl.crl>{tmp_path / 'missing.crl'}</ssl.crl></accept-options>
      </service>""")
    assert any("set ssl.verify-client" in m for m in found), found
    assert any("ssl.crl: no file" in m for m in found), found
