"""What a TLS connection's handshake settled about client certificates: the host setting whose
CA verified it (by the per-host SSLContext the SNI callback chose) and the client's certificate
(docs/behaviour.md, "Client certificate authentication")."""

from __future__ import annotations

import asyncio
import ssl
import weakref

from proxy.core.client_auth import ClientAuth, PeerCertificate, rfc2253

# Each per-host SSLContext that verifies clients, and the host setting it verifies for: filled
# by tls_contexts.TlsContexts, read per connection. One per worker process (ServerContext);
# an entry lasts as long as its context, which each connection made with it holds.
Negotiated = weakref.WeakKeyDictionary[ssl.SSLContext, ClientAuth]


def handshake_facts(
    transport: asyncio.BaseTransport, negotiated: Negotiated
) -> tuple[ClientAuth | None, PeerCertificate | None]:
    """The host setting the handshake verified for (None: it asked for no certificate), and the
    certificate it verified (None: none was sent)."""
    connection = transport.get_extra_info("ssl_object")
    if not isinstance(connection, ssl.SSLObject):
        return None, None
    auth = negotiated.get(connection.context)
    if auth is None:
        return None, None
    der = connection.getpeercert(binary_form=True)
    decoded = connection.getpeercert()
    if not der or not decoded:
        return auth, None
    subject = rfc2253(decoded.get("subject", ()))  # type: ignore[arg-type]
    issuer = rfc2253(decoded.get("issuer", ()))  # type: ignore[arg-type]
    return auth, PeerCertificate(der, subject, issuer)
