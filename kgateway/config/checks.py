"""Rules across services, checked once every service has been read.

* one URI per accept, one service per path; HTTP and raw TCP never share a port;
* services sharing a TLS port agree on its settings, and on ``proxy.protocol`` and
  ``http.handshake.timeout`` (the PROXY header, the TLS handshake and the request all
  come before the request's path picks a service, so one port has one setting);
* mutual TLS needs a truststore; Enterprise Shield needs mutual TLS.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from kgateway.config.model import Security, ServiceConfig
from kgateway.config.options import bind_address
from kgateway.config.values import URI

#: report(line, message): a problem in the file being loaded
Report = Callable[[int, str], None]


def check_tls(service: ServiceConfig, security: Security, problem: Report) -> None:
    """Mutual TLS needs a truststore; Enterprise Shield needs mutual TLS."""
    line = service.line
    needs_trust = service.accept_options["ssl.verify-client"] != "none" and any(
        u.is_tls for u in service.accepts)
    reverse_accept = any(u.is_reverse for u in service.accepts)
    reverse_connect = any(u.is_reverse for u in service.connects)
    if reverse_connect and service.connect_options["ssl.verify-client"] != "required":
        problem(line, f"service {service.name!r}: a reverse+wss:// connect always requires "
                      "client certificates (ssl.verify-client required)")
    if reverse_connect and not service.connect_options["reverse.allowed.names"]:
        # Fail-closed: any certificate the truststore vouches for could otherwise take the
        # public clients of this backplane.
        problem(line, f"service {service.name!r}: a reverse+wss:// connect needs the "
                      "connect-option reverse.allowed.names: the certificate names (CN or "
                      "SAN) of the internal gateways it accepts, or * for any certificate "
                      "signed by the truststore's CAs")
    if service.accept_options["ssl.crl"] is not None and not needs_trust:
        problem(line, f"service {service.name!r}: accept-option ssl.crl checks client "
                      "certificates: set ssl.verify-client to optional or required")
    for option_set, kind in ((service.accept_options, "accept"),
                             (service.connect_options, "connect")):
        crl = option_set["ssl.crl"]
        if crl is not None and not os.path.isfile(crl):
            problem(line, f"service {service.name!r}: {kind}-option ssl.crl: no file {crl}")
    if (needs_trust or reverse_accept or reverse_connect) and security.truststore_file is None:
        problem(line, f"service {service.name!r} checks certificates of the other side: "
                      "add <security><truststore><file>ca.pem</file>")
    if (reverse_connect or reverse_accept
            or service.connect_options["ssl.present-certificate"]) \
            and not security.has_identity:
        problem(line, f"service {service.name!r} presents a certificate: add "
                      "<security><keystore>")


def check_accepts(services: list[ServiceConfig], uri_line: Callable[[URI, int], int],
                  problem: Report) -> None:
    """One URI per accept; no two services on one path; HTTP and raw TCP never share a port;
    one TLS setting and one PROXY-protocol mode per port."""
    seen_uri: dict[tuple[str, str, int, str], str] = {}
    port_family: dict[tuple[str, int], tuple[str, str]] = {}
    tls_settings: dict[tuple[str, int], tuple[Any, str]] = {}
    proxy_modes: dict[tuple[str, int], tuple[str, str]] = {}
    handshake_timeouts: dict[tuple[str, int], tuple[float, str]] = {}
    for service in services:
        backplanes = [u for u in service.connects if u.is_reverse]
        for uri in (*(u for u in service.accepts if not u.is_reverse), *backplanes):
            line = uri_line(uri, service.line)
            host, port = bind_address(uri, service.accept_options)
            if uri.is_tls:
                # One TLS context per port: services sharing it must agree on its settings.
                settings = ("required",) if uri.is_reverse else tuple(
                    service.accept_options[k]
                    for k in ("ssl.verify-client", "ssl.protocols", "ssl.ciphers",
                              "ssl.handshake.timeout", "ssl.crl"))
                earlier = tls_settings.setdefault((host, port), (settings, service.name))
                if earlier[0] != settings:
                    problem(line, f"{uri} shares port {port} with service {earlier[1]!r} but "
                                  "not its TLS settings (ssl.verify-client, ssl.protocols, "
                                  "ssl.ciphers, ssl.handshake.timeout, ssl.crl; an Enterprise Shield backplane needs a port of "
                                  "its own)")
                    continue
            if not uri.is_reverse:
                mode = service.accept_options["proxy.protocol"]
                first = proxy_modes.setdefault((host, port), (mode, service.name))
                if first[0] != mode:
                    problem(line, f"{uri} shares port {port} with service {first[1]!r} but not "
                                  "its accept-option proxy.protocol: the PROXY header comes "
                                  "before the request, so one port has one setting")
                    continue
            if uri.is_http:
                timeout = service.accept_options["http.handshake.timeout"]
                first_t = handshake_timeouts.setdefault((host, port), (timeout, service.name))
                if first_t[0] != timeout:
                    problem(line, f"{uri} shares port {port} with service {first_t[1]!r} but "
                                  "not its accept-option http.handshake.timeout: the request "
                                  "is read before its path picks a service, so one port has "
                                  "one setting")
                    continue
            family = "http" if uri.is_http or uri.is_reverse else uri.scheme
            key = (uri.scheme.rstrip("s") if uri.is_http else uri.scheme, uri.host, uri.port,
                   uri.path if uri.is_http or uri.is_reverse else "")
            if key in seen_uri:
                problem(line, f"duplicate accept {uri}: already accepted by service "
                              f"{seen_uri[key]!r}")
                continue
            seen_uri[key] = service.name
            flavour = f"{family}{'+tls' if uri.is_tls else ''}"
            previous = port_family.get((host, port))
            if previous is not None and previous[0] != flavour:
                problem(line, f"accept {uri} shares port {port} with service {previous[1]!r}, "
                              f"which speaks {previous[0]} there: services may share a port "
                              "only over the same transport")
                continue
            port_family[(host, port)] = (flavour, service.name)


def check_auth(service: ServiceConfig, security: Security, protocol_auth: bool,
               problem: Report) -> None:
    """A realm that exists; a constraint only with a realm; credentials the accepts can get.

    Fail-closed: a security setting the gateway could not enforce is an error, never ignored.
    """
    constrained = bool(service.required_roles or service.require_valid_user)
    if service.realm_name is None:
        if constrained:
            problem(0, f"service {service.name!r} has an <authorization-constraint> but no "
                       "<realm-name>: nobody could be authorized")
        return
    if service.realm_name not in security.realms:
        known = ", ".join(sorted(security.realms)) or "none defined"
        problem(0, f"service {service.name!r}: realm-name {service.realm_name!r} names no "
                   f"<security><realm> (realms: {known})")
        return
    if protocol_auth:
        return
    for uri in service.accepts:
        if not uri.is_http:
            problem(0, f"service {service.name!r} of type {service.type} cannot authenticate "
                       f"clients of {uri}: credentials come with an HTTP/WebSocket handshake, "
                       "and a raw stream has none (use a ws/wss accept, or a jms or "
                       "amqp.proxy service, whose protocols carry credentials)")
