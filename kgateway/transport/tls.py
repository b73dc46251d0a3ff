"""TLS contexts for ``wss://``/``ssl://`` accepts and connects, and for Enterprise Shield.

The gateway's identity comes from ``<security><keystore>``: a PEM certificate (chain) and
key, or a PKCS#12 file with a password. Accepts present it; connects present it too when
the ``ssl.present-certificate`` connect-option asks for mutual TLS.

    accept:  identity + ssl.protocols + ssl.ciphers + ssl.verify-client (against truststore)
             + ssl.crl; with several <keystore>s, the certificate whose names match the host
             name the client asks for (SNI), else the first
    connect: chain AND hostname verified (service-identity via optionsForClientTLS) against
             ``ssl.truststore`` or ``<security><truststore>`` or the platform's store;
             ssl.protocols, ssl.ciphers, ssl.crl; optionally the identity as a client
             certificate

Revocation (``ssl.crl``): a PEM or DER CRL file, checked for the peer's (leaf) certificate
with OpenSSL's X509_V_FLAG_CRL_CHECK. The CRL must come from the CA that issued the peer's
certificate: with the flag set, a certificate whose issuer has no CRL loaded is refused
("unable to get certificate CRL"), so a CRL check is fail-closed. The file is read when the
listener is built (accepts) or per connect (connects): replace it and restart (accepts).

Handshake failures are turned into short reasons that say which check failed: hostname,
untrusted, expired, or a missing client certificate (``ClientTLS.explain`` on connects,
``describe_ssl_error`` and the logging ``TLSServerEndpoint`` on accepts).

Accepted TLS connections hand the application everything one socket read decrypted to, in
one ``dataReceived`` (``_LoggingTLSProtocol._flushReceiveBIO``): Twisted's
TLSMemoryBIOProtocol calls it once per TLS record (at most 16 KiB), so a 256 KiB read went up
the WebSocket parser and down to the back end's writeSequence sixteen times.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs12
from OpenSSL import SSL, crypto
from service_identity import VerificationError
from service_identity.hazmat import DNS_ID, IPAddress_ID, verify_service_identity
from service_identity.pyopenssl import extract_patterns
from twisted.internet import ssl
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IListeningPort, IOpenSSLClientConnectionCreator
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from zope.interface import implementer

from kgateway.config import Options, Security
from kgateway.config.model import Keystore
from kgateway.transport.admission import TLS_HANDSHAKE_TIMEOUT, refused
from kgateway.transport.links import format_address

log = Logger()

_PEM_CERT = re.compile(
    rb"-----BEGIN CERTIFICATE-----\r?\n.+?\r?\n-----END CERTIFICATE-----", re.DOTALL
)

#: ssl.protocols values (kgateway.config.options.TLS_PROTOCOLS) as OpenSSL versions
PROTOCOLS = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}


class TLSConfigError(Exception):
    """A certificate, key or CA file that cannot be used."""


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise TLSConfigError(f"cannot read {path}: {e.strerror}") from e


def load_certificates(path: str) -> list[ssl.Certificate]:
    """Every certificate in a PEM bundle (a CA file often holds several)."""
    blocks = _PEM_CERT.findall(_read(path))
    if not blocks:
        raise TLSConfigError(f"{path}: no PEM certificate found")
    return [ssl.Certificate.loadPEM(block) for block in blocks]


# -- the gateway's identity --------------------------------------------------------------------


@dataclass(frozen=True)
class Identity:
    """A private key and its certificate chain (leaf first)."""

    key: crypto.PKey
    chain: tuple[crypto.X509, ...]


def load_identity(certificate_file: str | None, key_file: str | None,
                  pkcs12_file: str | None = None, password: str | None = None) -> Identity:
    """The keystore: PEM certificate (+ chain) and key, or a PKCS#12 file."""
    secret = password.encode() if password else None
    if pkcs12_file is not None:
        try:
            key, cert, extra = pkcs12.load_key_and_certificates(_read(pkcs12_file), secret)
        except ValueError as e:
            raise TLSConfigError(f"{pkcs12_file}: not a PKCS#12 keystore or wrong password "
                                 f"({e})") from e
        if key is None or cert is None:
            raise TLSConfigError(f"{pkcs12_file}: PKCS#12 keystore holds no key and certificate")
        return Identity(crypto.PKey.from_cryptography_key(key),  # type: ignore[arg-type]
                        (crypto.X509.from_cryptography(cert),
                         *(crypto.X509.from_cryptography(c) for c in extra or ())))
    if certificate_file is None or key_file is None:
        raise TLSConfigError("no keystore: add <security><keystore>")
    chain = tuple(c.original for c in load_certificates(certificate_file))
    try:
        pkey = crypto.load_privatekey(crypto.FILETYPE_PEM, _read(key_file), secret or b"")
    except (SSL.Error, crypto.Error) as e:
        raise TLSConfigError(f"{key_file}: not a PEM private key, or wrong password ({e})") from e
    return Identity(pkey, chain)


def security_identity(security: Security) -> Identity:
    """The Identity named by a ``config.Security``."""
    return load_identity(security.certificate_file, security.key_file,
                         security.keystore_file, security.keystore_password)


def more_identities(security: Security) -> list[Identity]:
    """The identities of the second and later ``<keystore>``s (chosen by SNI)."""
    return [load_keystore(k) for k in security.more_keystores]


def load_keystore(keystore: Keystore) -> Identity:
    return load_identity(keystore.certificate_file, keystore.key_file,
                         keystore.keystore_file, keystore.keystore_password)


def connect_identity(security: Security, connect_options: Options) -> Identity | None:
    """The client certificate a service's connects present: the keystore's identity when the
    ``ssl.present-certificate`` connect-option asks for mutual TLS, else none."""
    if not connect_options["ssl.present-certificate"]:
        return None
    return security_identity(security)


# -- contexts ----------------------------------------------------------------------------------


def _protocol_bounds(protocols: Sequence[str]) -> dict[str, Any]:
    if not protocols:
        return {"raiseMinimumTo": ssl.TLSVersion.TLSv1_2}
    versions = [PROTOCOLS[p] for p in protocols]
    return {"insecurelyLowerMinimumTo": versions[0], "lowerMaximumSecurityTo": versions[-1]}


def load_crl(path: str) -> x509.CertificateRevocationList:
    """A CRL file, PEM or DER."""
    data = _read(path)
    try:
        if b"-----BEGIN X509 CRL-----" in data:
            return x509.load_pem_x509_crl(data)
        return x509.load_der_x509_crl(data)
    except ValueError as e:
        raise TLSConfigError(f"{path}: not a CRL (PEM or DER): {e}") from e


def check_revocation(context: SSL.Context, crl: x509.CertificateRevocationList) -> None:
    """Check the peer's certificate against *crl* (X509_V_FLAG_CRL_CHECK)."""
    store = context.get_cert_store()
    assert store is not None
    store.add_crl(crl)
    store.set_flags(crypto.X509StoreFlags.CRL_CHECK)


def certificate_names(cert: crypto.X509) -> set[str]:
    """The names a certificate carries: its subject CN and its DNS and IP SANs, lower-cased."""
    leaf = cert.to_cryptography()
    names = {str(a.value).lower()
             for a in leaf.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)}
    try:
        sans = leaf.extensions.get_extension_for_class(
            x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return names
    names.update(n.lower() for n in sans.get_values_for_type(x509.DNSName))
    names.update(str(a) for a in sans.get_values_for_type(x509.IPAddress))
    return names


def names_match(identity: Identity, host: str) -> bool:
    """Whether *identity*'s certificate names *host* (its SANs, wildcards included)."""
    try:
        verify_service_identity(extract_patterns(identity.chain[0]), [DNS_ID(host)], [])
    except (VerificationError, ValueError):
        return False
    return True


class _ServerNames:
    """The servername (SNI) callback: switch to the context whose certificate names the
    host the client asked for; the default context otherwise (no SNI, or no match)."""

    def __init__(self, choices: list[tuple[Identity, SSL.Context]]) -> None:
        self.choices = choices

    def __call__(self, connection: SSL.Connection) -> None:
        name = connection.get_servername()
        if not name:
            return
        host = name.decode("ascii", "replace").rstrip(".").lower()
        for identity, context in self.choices:
            if names_match(identity, host):
                connection.set_context(context)
                return


def server_options(identity: Identity, *, protocols: Sequence[str] = (),
                   ciphers: str | None = None, verify_client: str = "none",
                   ca_file: str | None = None, crl_file: str | None = None,
                   alternatives: Sequence[Identity] = ()) -> ssl.CertificateOptions:
    """Options for an accepting TLS endpoint: the identity (and *alternatives* chosen by
    SNI), and client checks if asked."""
    extra: dict[str, Any] = _protocol_bounds(protocols)
    if ciphers:
        extra["acceptableCiphers"] = ssl.AcceptableCiphers.fromOpenSSLCipherString(ciphers)
    if verify_client != "none":
        if ca_file is None:
            raise TLSConfigError("ssl.verify-client needs <security><truststore>")
        extra.update(verify=True, caCerts=[c.original for c in load_certificates(ca_file)],
                     requireCertificate=verify_client == "required")
    try:
        options = ssl.CertificateOptions(
            privateKey=identity.key, certificate=identity.chain[0],
            extraCertChain=list(identity.chain[1:]), **extra,
        )
        context = options.getContext()
    except (SSL.Error, ValueError) as e:
        raise TLSConfigError(f"keystore certificate and key do not make a usable pair: {e}") from e
    if verify_client != "none":
        # Same checks as Twisted's, but remember why a client certificate failed, for the log.
        context.set_verify(context.get_verify_mode(), _remember_verify_error)
        if crl_file is not None:
            check_revocation(context, load_crl(crl_file))
    if alternatives:
        same = dict(protocols=protocols, ciphers=ciphers, verify_client=verify_client,
                    ca_file=ca_file, crl_file=crl_file)
        context.set_tlsext_servername_callback(_ServerNames(
            [(alt, server_options(alt, **same).getContext())  # type: ignore[arg-type]
             for alt in alternatives]))
    return options


#: X509_V_ERR_CERT_HAS_EXPIRED, X509_V_ERR_CERT_REVOKED
_EXPIRED = 10
_REVOKED = 23


def _remember_verify_error(connection: SSL.Connection, certificate: crypto.X509, errno: int,
                           depth: int, ok: int) -> bool:
    if not ok:
        connection.kgateway_verify_error = errno  # type: ignore[attr-defined]
        if errno == _EXPIRED:
            # OpenSSL would only say "certificate verify failed"; pyOpenSSL re-raises this
            # from the handshake, so the log can say which check failed.
            raise SSL.Error([("", "", "certificate verify failed: certificate has expired")])
    return bool(ok)


def client_verify_error(connection: SSL.Connection | None) -> str | None:
    """Why the client certificate on *connection* failed verification, if it did."""
    errno = getattr(connection, "kgateway_verify_error", None)
    if errno is None:
        return None
    if errno == _EXPIRED:
        return "TLS refused: expired client certificate"
    if errno == _REVOKED:
        return "TLS refused: revoked client certificate"
    return "TLS refused: untrusted client certificate"


def trust_root(ca_file: str | None) -> Any:
    """An IOpenSSLTrustRoot: the CA bundle *ca_file*, or the platform's store."""
    if ca_file is None:
        return ssl.platformTrust()
    return ssl.trustRootFromCertificates(load_certificates(ca_file))


class ClientTLS:
    """The TLS side of one connect: checks the chain and *hostname*, presents *identity* as a
    client certificate when given (mutual TLS), and explains a failure afterwards.

    ``creator`` goes to ``wrapClientTLS``. Its verify callback makes the same checks as
    Twisted's own (OpenSSL's chain verdict, then service-identity on the leaf), and also
    remembers whether the chain failed because it expired: OpenSSL's error only says
    "certificate verify failed", and a refusal should say which check failed.
    """

    def __init__(self, hostname: str, ca_file: str | None,
                 identity: Identity | None = None, *, protocols: Sequence[str] = (),
                 ciphers: str | None = None, crl_file: str | None = None) -> None:
        self.hostname = hostname
        self.expired = False
        self.revoked = False
        self.crl = load_crl(crl_file) if crl_file is not None else None
        client_cert = None
        extra: dict[str, Any] = _protocol_bounds(protocols)
        if ciphers:
            extra["acceptableCiphers"] = ssl.AcceptableCiphers.fromOpenSSLCipherString(ciphers)
        if identity is not None:
            client_cert = ssl.PrivateCertificate.fromCertificateAndKeyPair(
                ssl.Certificate(identity.chain[0]), ssl.KeyPair(identity.key))
            if len(identity.chain) > 1:
                extra["extraCertChain"] = list(identity.chain[1:])
        inner = ssl.optionsForClientTLS(hostname, trustRoot=trust_root(ca_file),
                                        clientCertificate=client_cert,
                                        extraCertificateOptions=extra)
        self.creator: IOpenSSLClientConnectionCreator = _Creator(self, inner)
        if isIPAddress(hostname) or isIPv6Address(hostname):
            self._identity: Any = IPAddress_ID(hostname)
        else:
            self._identity = DNS_ID(hostname)

    def explain(self, reason: Failure) -> str:
        """A short reason for a failed connect, fit for a close frame and a log line."""
        value = reason.value
        if isinstance(value, VerificationError):
            return f"TLS hostname verification failed: certificate does not name {self.hostname}"
        if isinstance(value, SSL.Error):
            text = str(value)
            if "certificate verify failed" in text:
                detail = "expired" if self.expired or "expired" in text else \
                    "revoked" if self.revoked or "revoked" in text else "untrusted"
                return f"TLS certificate verification failed ({detail} certificate)"
            return describe_ssl_error(value)
        return reason.getErrorMessage()

    def _verify(self, tls_protocol: Any, conn: SSL.Connection, cert: crypto.X509, errno: int,
                depth: int, ok: int) -> bool:
        if not ok:
            self.expired = self.expired or errno == _EXPIRED
            self.revoked = self.revoked or errno == _REVOKED
            return False
        if depth != 0:
            return True
        try:
            verify_service_identity(extract_patterns(cert), [self._identity], [])
        except VerificationError:
            tls_protocol.failVerification(Failure())
            return False
        return True


def is_tls_failure(reason: Failure | None) -> bool:
    """Whether a lost connection was a TLS refusal (worth ClientTLS.explain())."""
    return reason is not None and isinstance(reason.value, (SSL.Error, VerificationError))


@implementer(IOpenSSLClientConnectionCreator)
class _Creator:
    """Twisted's client TLS with ClientTLS's verify callback."""

    def __init__(self, owner: ClientTLS, inner: IOpenSSLClientConnectionCreator) -> None:
        self.owner = owner
        self.inner = inner

    crl_checked = False

    def clientConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        connection = self.inner.clientConnectionForTLS(tlsProtocol)
        if self.owner.crl is not None and not self.crl_checked:
            check_revocation(connection.get_context(), self.owner.crl)
            self.crl_checked = True  # one context per ClientTLS: add the CRL once
        connection.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT,
                              lambda *args: self.owner._verify(tlsProtocol, *args))
        return connection


def describe_ssl_error(error: BaseException, server_side: bool = False) -> str:
    """Which TLS check failed, in a few words, from an OpenSSL error."""
    text = str(error).lower()
    whose = "client" if server_side else "server"
    if "peer did not return a certificate" in text or "certificate required" in text:
        return "TLS refused: no client certificate"
    if "certificate verify failed" in text or "bad certificate" in text \
            or "unknown ca" in text or "certificate expired" in text:
        if "expired" in text:
            return f"TLS refused: expired {whose} certificate"
        return f"TLS refused: untrusted {whose} certificate"
    if server_side and "unexpected eof" in text:
        return "TLS refused: the client left during the handshake (does it trust our certificate?)"
    if "no shared cipher" in text or "unsupported protocol" in text or "version" in text:
        return "TLS refused: no common protocol version or cipher"
    return f"TLS handshake failed ({_openssl_reason(error)})"


def _openssl_reason(error: BaseException) -> str:
    """The reason strings of an OpenSSL error stack, e.g. ``no shared cipher``."""
    stack = error.args[0] if error.args and isinstance(error.args[0], list) else []
    reasons = [str(item[-1]) for item in stack if isinstance(item, tuple) and item]
    return ", ".join(reasons) or str(error) or type(error).__name__


# -- a TLS server endpoint that says why clients were refused --------------------------------


class TLSServerEndpoint:
    """Wraps a server endpoint in TLS (Twisted has wrapClientTLS but no server twin) and logs,
    for each refused client, which check failed and which services it was refused by.

    With a *handshake_timeout* (accept-option ``ssl.handshake.timeout``), a client whose TLS
    handshake has not finished by then is dropped: Twisted's TLSMemoryBIOProtocol has no
    such bound, and a client that sends half a ClientHello would otherwise hold its socket
    (and, on ``ssl://`` accepts, its session) for as long as TCP lets it. Such drops are
    counted and logged like admission refusals (*counts*, *refusal_log*); a client refused in
    the handshake itself (no or a bad certificate) is reported to *on_refused*.
    """

    def __init__(self, endpoint: Any, options: Any, services: str = "", *,
                 reactor: Any = None, handshake_timeout: float = 0.0,
                 counts: Any = None, refusal_log: Any = None,
                 on_refused: Callable[[], None] | None = None) -> None:
        self.endpoint = endpoint
        self.options = options
        self.services = services
        self.reactor = reactor
        self.handshake_timeout = handshake_timeout if reactor is not None else 0.0
        self.counts = counts
        self.refusal_log = refusal_log
        #: called for each client refused in the handshake (the tracker counts it)
        self.on_refused = on_refused

    def listen(self, factory: Any) -> Deferred[IListeningPort]:
        tls_factory = _LoggingTLSFactory(self.options, False, factory)
        tls_factory.services = self.services
        tls_factory.endpoint = self
        tls_factory.on_refused = self.on_refused
        result: Deferred[IListeningPort] = self.endpoint.listen(tls_factory)
        return result


#: the plaintext asked of OpenSSL per call (Twisted's); one call yields one record at most
TLS_READ_SIZE = 2**15


class _LoggingTLSProtocol(TLSMemoryBIOProtocol):
    factory: _LoggingTLSFactory
    _deadline: Any = None

    def makeConnection(self, transport: Any) -> None:
        endpoint = self.factory.endpoint
        if endpoint is not None and endpoint.handshake_timeout:
            self._deadline = endpoint.reactor.callLater(endpoint.handshake_timeout,
                                                        self._handshake_expired)
        super().makeConnection(transport)

    def _checkHandshakeStatus(self) -> None:
        super()._checkHandshakeStatus()
        if self._handshakeDone:
            self._cancel_deadline()

    def _cancel_deadline(self) -> None:
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None

    def _handshake_expired(self) -> None:
        self._deadline = None
        endpoint = self.factory.endpoint
        if self._handshakeDone or endpoint is None:
            return
        transport: Any = self.transport
        peer = format_address(transport.getPeer())
        message = f"TLS handshake not finished within {endpoint.handshake_timeout:g}s"
        if endpoint.counts is not None and endpoint.refusal_log is not None:
            refused(endpoint.counts, endpoint.refusal_log, self.factory.services, peer,
                    TLS_HANDSHAKE_TIMEOUT, message)
        else:
            log.info("TLS client {peer} refused by {services}: {reason}", peer=peer,
                     services=self.factory.services, reason=message)
        self.abortConnection()

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        self._cancel_deadline()
        super().connectionLost(reason)

    def _flushReceiveBIO(self) -> None:
        """TLSMemoryBIOProtocol's, but the records one read made available are delivered
        together, in one ``dataReceived``, before a close or an error that follows them is
        acted on, as Twisted does record by record. (The ``recv`` loop itself stays one
        record per call: OpenSSL's SSL_read never returns more.)"""
        tls = self._tlsConnection
        chunks: list[bytes] = []
        while not self._lostTLSConnection:
            try:
                chunks.append(tls.recv(TLS_READ_SIZE))
            except SSL.WantReadError:
                break
            except SSL.ZeroReturnError:  # the peer's close_notify
                chunks = self._deliver(chunks)
                if self._lostTLSConnection:
                    break  # what was delivered closed the connection first
                self._shutdownTLS()
                self._tlsShutdownFinished(None)
            except SSL.Error:
                failure = Failure()
                chunks = self._deliver(chunks)
                if self._lostTLSConnection:
                    break
                self._tlsShutdownFinished(failure)
        self._deliver(chunks)
        self._flushSendBIO()

    def _deliver(self, chunks: list[bytes]) -> list[bytes]:
        if chunks and not self._aborted:
            ProtocolWrapper.dataReceived(self, chunks[0] if len(chunks) == 1
                                         else b"".join(chunks))
        return []

    def _tlsShutdownFinished(self, reason: Failure | None) -> None:
        if reason is not None and isinstance(reason.value, SSL.Error) \
                and not self._handshakeDone:
            transport: Any = self.transport
            why = client_verify_error(self._tlsConnection) or \
                describe_ssl_error(reason.value, server_side=True)
            log.info("TLS client {peer} refused by {services}: {reason}",
                     peer=format_address(transport.getPeer()),
                     services=self.factory.services, reason=why)
            if self.factory.on_refused is not None:
                self.factory.on_refused()
        super()._tlsShutdownFinished(reason)


class _LoggingTLSFactory(TLSMemoryBIOFactory):
    noisy = False  # no "Starting factory" line per listener or connection
    protocol = _LoggingTLSProtocol
    services = ""
    endpoint: TLSServerEndpoint | None = None
    on_refused: Callable[[], None] | None = None
