"""TLS termination: one server SSLContext whose SNI callback picks each connection's certificate
from the current snapshot (Ingress TLS Secrets) or the default certificate (--tls-cert).

Certificates change with the snapshot and need no restart: each handshake looks at the snapshot
it finds. An SSLContext is built once per certificate and kept while its certificate is in use.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable

from proxy.core.model import TlsCertificate
from proxy.core.routing import Snapshot
from proxy.core.sni import certificate_for
from proxy.system.cert_chain import load_cert_chain

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


class TlsContexts:
    def __init__(
        self, snapshot: Callable[[], Snapshot | None], default: TlsCertificate | None
    ) -> None:
        self._snapshot = snapshot
        self._default = () if default is None else (default,)
        self._contexts: dict[TlsCertificate, ssl.SSLContext] = {}
        self._broken: set[TlsCertificate] = set()  # said once, not at every handshake
        self._seen: Snapshot | None = None
        # Clients without SNI get the default certificate straight from the listening context.
        self.listening = new_context(default) if default is not None else _server_context()
        self.listening.sni_callback = self._choose

    def _choose(
        self, connection: ssl.SSLObject, server_name: str | None, _: ssl.SSLContext
    ) -> int | None:
        snapshot = self._snapshot()
        if snapshot is not self._seen:
            self._seen = snapshot
            self._forget_unused(snapshot)
        certificates = (*(snapshot.certificates if snapshot else ()), *self._default)
        certificate = certificate_for(certificates, server_name.lower() if server_name else None)
        if certificate is None:
            return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
        context = self._context_for(certificate)
        if context is None:
            return ssl.ALERT_DESCRIPTION_INTERNAL_ERROR
        connection.context = context
        return None

    def _context_for(self, certificate: TlsCertificate) -> ssl.SSLContext | None:
        context = self._contexts.get(certificate)
        if context is None and certificate not in self._broken:
            try:
                context = self._contexts[certificate] = new_context(certificate)
            except OSError as error:  # ssl.SSLError mostly: a Secret whose PEM does not load
                self._broken.add(certificate)
                log.error("TLS certificate of %s does not load (%s); its hosts get no TLS",
                          certificate.source, error)  # fmt: skip
        return context

    def _forget_unused(self, snapshot: Snapshot | None) -> None:
        in_use = {*(snapshot.certificates if snapshot else ()), *self._default}
        for certificate in [c for c in self._contexts if c not in in_use]:
            del self._contexts[certificate]
        self._broken &= in_use
