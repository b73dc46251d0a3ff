"""``<security>``: the keystore and truststore (TLS), and the realms (authentication).

    <security>
      <keystore> certificate-file + key-file (PEM), or type PKCS12 + file; password(-file)
      <truststore> file (a PEM CA bundle)
      <realm>                                   (kgateway.auth: one Portal per realm)
        <name>demo</name> <description>...</description>
        <authentication>
          <http-challenge-scheme>Basic</http-challenge-scheme>   Basic | Application Basic |
                                                                 Bearer
          <http-header>X-Token</http-header>                      token sources (Bearer):
          <http-query-parameter>access_token</http-query-parameter>
          <http-cookie>kgw_token</http-cookie>
          <login-modules>
            <login-module><type>file</type><success>required</success>
              <options><file>users.passwd</file></options></login-module>
          </login-modules>
        </authentication>
      </realm>

Every login module's options are validated here, through ``kgateway.auth.settings``, so a
realm that could not work is a configuration error with its line, before anything listens.
Anything of Kaazing's that kgateway does not implement is an error too, never ignored.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from types import MappingProxyType

from kgateway.auth.settings import (
    AuthConfigError,
    ChallengeScheme,
    LoginModuleSettings,
    TokenSources,
    login_module_settings,
    realm_settings,
)
from kgateway.config.model import Keystore, RealmConfig, Security
from kgateway.config.xmltree import Element

#: Kaazing <authentication> children kgateway does not implement: refused, with the reason
_UNSUPPORTED = {
    "authorization-mode": "only challenge mode is implemented (credentials on each "
                          "handshake)",
    "authorization-timeout": "not implemented",
    "session-timeout": "kgateway keeps no authentication sessions",
    "user-principal-class": "not implemented",
}


class SecurityReader:
    """Reads the ``<security>`` elements of one file, reporting problems with their lines."""

    def __init__(self, base: str, problem: Callable[[int, str], None]) -> None:
        self.base = base
        self.problem = problem

    def path_value(self, text: str) -> str:
        return os.path.normpath(os.path.join(self.base, text))

    def read(self, elements: list[Element]) -> Security:
        trust = None
        keystores: list[Keystore] = []
        realms: dict[str, RealmConfig] = {}
        for element in elements:
            for child in element.children:
                if child.tag == "keystore":
                    keystores.append(self.keystore(child))
                elif child.tag == "truststore":
                    for item in child.children:
                        if item.tag == "file":
                            trust = self.existing_file(item)
                        elif item.tag == "type" and item.text.upper() != "PEM":
                            self.problem(item.line, f"truststore type {item.text} is not "
                                                    "supported: export the CA certificates to "
                                                    "a PEM bundle (see README, TLS)")
                        elif item.tag not in ("type", "password", "password-file"):
                            self.problem(item.line, f"unknown element <{item.tag}> in "
                                                    "<truststore>; expected file")
                elif child.tag == "realm":
                    realm = self.realm(child)
                    if realm is not None:
                        if realm.name in realms:
                            self.problem(child.line, f"realm {realm.name!r} is defined twice "
                                                     f"(first at line {realms[realm.name].line})")
                        realms.setdefault(realm.name, realm)
                else:
                    self.problem(child.line, f"unknown element <{child.tag}> in <security>; "
                                             "expected keystore, truststore or realm")
        first = keystores[0] if keystores else Keystore()
        return Security(first.certificate_file, first.key_file, trust, first.keystore_file,
                        first.keystore_password, MappingProxyType(realms),
                        tuple(keystores[1:]))

    def keystore(self, child: Element) -> Keystore:
        """One <keystore>; several give one certificate per host name (SNI)."""
        cert = key = p12 = password = None
        kind = None
        for item in child.children:
            if item.tag == "certificate-file":
                cert = self.existing_file(item)
            elif item.tag == "key-file":
                key = self.existing_file(item)
            elif item.tag == "file":
                p12 = self.existing_file(item)
            elif item.tag == "type":
                kind = item
            elif item.tag == "password":
                password = item.text
            elif item.tag == "password-file":
                password = self.password_file(item)
            else:
                self.problem(item.line, f"unknown element <{item.tag}> in <keystore>; "
                                        "expected certificate-file and key-file, or "
                                        "file (PKCS#12), type, password, "
                                        "password-file")
        if kind is not None and kind.text.upper() not in ("PEM", "PKCS12"):
            self.problem(kind.line, f"keystore type {kind.text} is not supported: "
                                    "convert a Java keystore with keytool "
                                    "-importkeystore -deststoretype PKCS12 (see "
                                    "README, TLS)")
        if p12 is not None and cert is not None:
            self.problem(child.line, "<keystore>: give either <file> (PKCS#12) or "
                                     "<certificate-file> + <key-file>, not both")
        return Keystore(cert, key or cert, p12, password)

    def password_file(self, element: Element) -> str | None:
        path = self.existing_file(element)
        if path is None:
            return None
        with open(path, encoding="utf-8") as f:
            return f.readline().rstrip("\r\n")

    def existing_file(self, element: Element) -> str | None:
        path = self.path_value(element.text)
        if not os.path.isfile(path):
            self.problem(element.line, f"<{element.tag}>: no such file {path}")
            return None
        return path


    def realm(self, element: Element) -> RealmConfig | None:
        name = description = ""
        scheme = "Basic"
        sources: dict[str, str] = {}
        modules: list[LoginModuleSettings] = []
        failed = False
        for child in element.children:
            if child.tag == "name":
                name = child.text
            elif child.tag == "description":
                description = child.text
            elif child.tag == "authentication":
                for item in child.children:
                    if item.tag == "http-challenge-scheme":
                        scheme = item.text
                    elif item.tag in ("http-header", "http-query-parameter", "http-cookie"):
                        if not item.text:
                            self.problem(item.line, f"<{item.tag}> needs a name")
                        sources[item.tag] = item.text
                    elif item.tag == "login-modules":
                        for module in item.children:
                            if module.tag != "login-module":
                                self.problem(module.line, f"unknown element <{module.tag}> in "
                                                          "<login-modules>; expected "
                                                          "login-module")
                                continue
                            settings = self.login_module(module)
                            if settings is None:
                                failed = True
                            else:
                                modules.append(settings)
                    elif item.tag in _UNSUPPORTED:
                        self.problem(item.line, f"<{item.tag}> is not supported: "
                                                f"{_UNSUPPORTED[item.tag]}")
                    else:
                        self.problem(item.line, f"unknown element <{item.tag}> in "
                                                "<authentication>; expected "
                                                "http-challenge-scheme, http-header, "
                                                "http-query-parameter, http-cookie, "
                                                "login-modules")
            else:
                self.problem(child.line, f"unknown element <{child.tag}> in <realm>; expected "
                                         "name, description, authentication")
        if failed:
            return None
        try:
            realm = realm_settings(name, scheme, modules, description)
        except AuthConfigError as e:
            for message in e.problems:
                self.problem(element.line, f"realm {name!r}: {message}")
            return None
        token_sources = TokenSources(sources.get("http-header"),
                                     sources.get("http-query-parameter"),
                                     sources.get("http-cookie"))
        if token_sources and realm.challenge_scheme is not ChallengeScheme.BEARER:
            self.problem(element.line, f"realm {name!r}: http-header, http-query-parameter "
                                       "and http-cookie carry bearer tokens: they need the "
                                       "Bearer scheme and a jwt login module")
            return None
        return RealmConfig(name, realm, token_sources, element.line)

    def login_module(self, element: Element) -> LoginModuleSettings | None:
        kind = success = ""
        options: dict[str, str] = {}
        for child in element.children:
            if child.tag == "type":
                kind = child.text
            elif child.tag == "success":
                success = child.text
            elif child.tag == "options":
                for option in child.children:
                    options[option.tag] = option.text
            else:
                self.problem(child.line, f"unknown element <{child.tag}> in <login-module>; "
                                         "expected type, success, options")
        try:
            return login_module_settings(kind, success or "required", options, self.base)
        except AuthConfigError as e:
            for message in e.problems:
                self.problem(element.line, f"login-module {kind!r}: {message}")
            return None
