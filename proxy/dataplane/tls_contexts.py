"""TLS termination: one server SSLContext whose SNI callback picks each connection's certificate
from the current snapshot (Ingress TLS Secrets) or the default certificate (--tls-cert).

Certificates change with the snapshot and need no restart: each handshake looks at the snapshot
it finds. An SSLContext is built once per certificate and kept while its certificate is in use.

Hosts with auth-tls-* (docs/behaviour.md, "Client certificate authentication") get a context of
their own per certificate, with their CA (and CRL) as its store. Whether a client is asked for a
certificate at all is fixed by the *listening* context (Python cannot call SSL_set_verify in the
SNI callback, as nginx does), so there are two: `listening` asks none, `asking` asks one, and
the listener picks by the server name it peeks in the ClientHello (`for_server_name`).
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable

from proxy.core.client_auth import ClientAuth
from proxy.core.model import TlsCertificate
from proxy.core.routing import Snapshot
from proxy.core.sni import certificate_for, covers
from proxy.dataplane.client_auth import Negotiated
from proxy.system.cert_chain import load_cert_chain, load_verify_pem

log = logging.getLogger("sticky_proxy.tls")


def load_default_certificate(cert_path: str, key_path: str) -> TlsCertificate:
    """The --tls-cert/--tls-key pair; ValueError with one line naming the file that fails."""
    try:
        with open(cert_path, "rb") as cert, open(key_path, "rb") as key:
            certificate = TlsCertificate(cert_path, (), cert.read(), key.read())
    except OSError as error:
        raise ValueError(f"{error.filename}: {error.strerror}") from None
    try:
        new_context(certificate)
    except ssl.SSLError as error:
        problem = f"not a certificate and its key ({error})"
        raise ValueError(f"{cert_path}, {key_path}: {problem}") from None
    except OSError as error:
        raise ValueError(f"{cert_path}, {key_path}: cannot be loaded ({error})") from None
    return certificate


def new_context(certificate: TlsCertificate) -> ssl.SSLContext:
    """A server context for one certificate; ssl.SSLError if the PEM does not load, another
    OSError if it could not be handed to OpenSSL (see `proxy.system.cert_chain`)."""
    context = _server_context()
    load_cert_chain(context, certificate.chain, certificate.key)
    return context


def _server_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["http/1.1"])  # the data plane speaks HTTP/1.1 only
    return context


_Key = tuple[TlsCertificate, ClientAuth | None]


class TlsContexts:
    def __init__(
        self,
        snapshot: Callable[[], Snapshot | None],
        default: TlsCertificate | None,
        negotiated: Negotiated | None = None,
    ) -> None:
        self._snapshot = snapshot
        self._default = () if default is None else (default,)
        self._contexts: dict[_Key, ssl.SSLContext] = {}
        self._broken: set[_Key] = set()  # said once, not at every handshake
        self._seen: Snapshot | None = None
        # while some host asks for certificates, every host's setting (None: it asks none)
        self._asking_hosts: dict[str | None, ClientAuth | None] = {}
        self._negotiated = Negotiated() if negotiated is None else negotiated
        # Clients without SNI get the default certificate straight from the listening context.
        self.listening = self._listening(default)
        self.asking, self.asking_crl = self._askings()

    def _askings(self) -> tuple[ssl.SSLContext, ssl.SSLContext]:
        """The listening contexts that ask for a certificate: the verify flags are fixed with
        the verify mode, so a host with ca.crl has its own. Made anew whenever a host's setting
        changes: a resumed TLS session skips verification, and sessions live in the listening
        context's cache, so none made under an old CA is resumed under a new one."""
        made = []
        for crl in (False, True):
            context = self._listening(self._default[0] if self._default else None)
            context.verify_mode = ssl.CERT_OPTIONAL  # (CERT_REQUIRED would end the handshake)
            if crl:
                context.verify_flags |= ssl.VERIFY_CRL_CHECK_CHAIN  # as nginx's ssl_crl
            # No session tickets: one issued for a host can be resumed under another's server
            # name (TLS 1.3), whose CA never saw the certificate; sessions by id stay per name.
            context.options |= ssl.OP_NO_TICKET
            context.num_tickets = 0
            made.append(context)
        return made[0], made[1]

    def _listening(self, default: TlsCertificate | None) -> ssl.SSLContext:
        context = new_context(default) if default is not None else _server_context()
        context.sni_callback = self._choose
        return context

    def peeks(self) -> bool:
        """Whether a new connection's server name decides its listening context: only while
        some host asks for client certificates."""
        self._look()
        return bool(self._asking_hosts)

    def for_server_name(self, server_name: str | None) -> ssl.SSLContext:
        """The listening context for a ClientHello's server name (None: none, or unreadable)."""
        self._look()
        auth = self._auth_for(server_name)
        if auth is None:
            return self.listening
        return self.asking if auth.crl is None else self.asking_crl

    def _look(self) -> None:
        snapshot = self._snapshot()
        if snapshot is not self._seen:
            self._seen = snapshot
            asking: dict[str | None, ClientAuth | None] = {}
            if snapshot is not None and any(auth.asks for _, auth in snapshot.client_auths):
                # every host, so that a server name of one without a setting of its own is
                # not taken for the catch-all server's
                asking = dict.fromkeys(route.host for route in snapshot.routes)
                asking.update((host, a if a.asks else None) for host, a in snapshot.client_auths)
            if asking != self._asking_hosts:
                self._asking_hosts = asking
                self.asking, self.asking_crl = self._askings()
            self._forget_unused(snapshot)

    def _auth_for(self, server_name: str | None) -> ClientAuth | None:
        """The client certificate setting of the host a server name is for: its own, a
        wildcard's, else the catch-all server's (host None), as nginx picks the server."""
        hosts = self._asking_hosts
        if not hosts:
            return None
        if server_name is not None:
            if server_name in hosts:
                return hosts[server_name]
            for host, auth in hosts.items():
                if host is not None and covers(host, server_name):
                    return auth
        return hosts.get(None)

    def _choose(
        self, connection: ssl.SSLObject, server_name: str | None, _: ssl.SSLContext
    ) -> int | None:
        self._look()
        snapshot = self._seen
        name = server_name.lower() if server_name else None
        certificates = (*(snapshot.certificates if snapshot else ()), *self._default)
        certificate = certificate_for(certificates, name)
        if certificate is None:
            return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
        context = self._context_for((certificate, self._auth_for(name)))
        if context is None:
            return ssl.ALERT_DESCRIPTION_INTERNAL_ERROR
        connection.context = context
        return None

    def _context_for(self, key: _Key) -> ssl.SSLContext | None:
        context = self._contexts.get(key)
        if context is None and key not in self._broken:
            certificate, auth = key
            try:
                context = new_context(certificate)
                if auth is not None:
                    _verify_clients(context, auth)
                    self._negotiated[context] = auth
                self._contexts[key] = context
            except OSError as error:  # ssl.SSLError mostly: a Secret whose PEM does not load
                self._broken.add(key)
                source = (
                    certificate.source
                    if auth is None
                    else f"{certificate.source} with {auth.source}"
                )
                log.error("TLS certificate of %s does not load (%s); its hosts get no TLS",
                          source, error)  # fmt: skip
        return context

    def _forget_unused(self, snapshot: Snapshot | None) -> None:
        certificates = {*(snapshot.certificates if snapshot else ()), *self._default}
        auths = {auth for auth in self._asking_hosts.values() if auth is not None}

        def in_use(key: _Key) -> bool:
            certificate, auth = key
            return certificate in certificates and (auth is None or auth in auths)

        for key in [key for key in self._contexts if not in_use(key)]:
            del self._contexts[key]
        self._broken = {key for key in self._broken if in_use(key)}


def _verify_clients(context: ssl.SSLContext, auth: ClientAuth) -> None:
    """The host's CA (and ca.crl) as the store client certificates are verified against. The
    handshake asks for a certificate, and checks revocation, by the listening context's verify
    mode and flags, not this one's (`asking_crl`)."""
    context.verify_mode = ssl.CERT_OPTIONAL
    context.load_verify_locations(cadata=auth.ca.decode("ascii", "replace"))
    if auth.crl is not None:
        load_verify_pem(context, auth.crl)
