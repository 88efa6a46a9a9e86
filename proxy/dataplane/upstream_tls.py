"""TLS to upstreams (backend-protocol HTTPS, docs/behaviour.md "Upstream TLS"): the client
SSLContext an `UpstreamTls` describes, built once per value and shared by every connection of
its pools, and the name check that follows a verified handshake."""

from __future__ import annotations

import ipaddress
import logging
import ssl
from dataclasses import dataclass
from typing import Any

from proxy.core.model import UpstreamTls
from proxy.core.sni import covers
from proxy.system.cert_chain import load_cert_chain

log = logging.getLogger("sticky_proxy.upstream")
# proxy-ssl-protocols names (as translation validates them)
_VERSIONS = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}


@dataclass(frozen=True, slots=True)
class ClientTls:
    """What dialling over TLS needs: the context, the SNI name ("" sends none), and the name
    the verified certificate must carry (None: not checked). `problem`: the context could not
    be built, and every connection fails with it."""

    context: ssl.SSLContext | None
    server_hostname: str
    check_name: str | None
    problem: str = ""


def client_tls(tls: UpstreamTls) -> ClientTls:
    """The `ClientTls` for `tls`; a PEM that does not load is logged once, here."""
    try:
        context = _context(tls)
    except (OSError, ValueError) as error:  # ssl.SSLError mostly: a client key that does not load
        problem = f"TLS settings of {tls.source or 'backend-protocol HTTPS'} do not load ({error})"
        log.error("%s; its upstream connections fail", problem)
        return ClientTls(None, "", None, problem)
    # The name is checked after the handshake, not by OpenSSL: Python checks only the SNI name,
    # and nginx checks proxy_ssl_name whether it is sent or not (proxy_ssl_server_name).
    return ClientTls(context, tls.name if tls.sni else "", tls.name if tls.verify else None)


def _context(tls: UpstreamTls) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    versions = sorted(_VERSIONS[name] for name in tls.protocols)
    context.minimum_version, context.maximum_version = versions[0], versions[-1]
    context.set_ciphers(tls.ciphers)
    context.set_alpn_protocols(["http/1.1"])  # the data plane speaks HTTP/1.1 only
    if tls.verify and tls.ca is not None:
        context.load_verify_locations(cadata=tls.ca.decode("latin-1"))
    else:
        context.verify_mode = ssl.CERT_NONE  # proxy-ssl-verify off: nginx's default
    if tls.chain is not None and tls.key is not None:
        load_cert_chain(context, tls.chain, tls.key)
    return context


def certificate_names(peercert: dict[str, Any]) -> list[str]:
    """The names a verified certificate answers for: its DNS and IP subjectAltNames, else its
    common name (as OpenSSL's X509_check_host, which nginx uses)."""
    alternatives = peercert.get("subjectAltName", ())
    names = [value for kind, value in alternatives if kind in ("DNS", "IP Address")]
    if any(kind == "DNS" for kind, _ in alternatives):
        return names
    common = [
        value for rdn in peercert.get("subject", ()) for key, value in rdn if key == "commonName"
    ]
    return names + common


def matches(names: list[str], wanted: str) -> bool:
    """Does a certificate with `names` answer for `wanted` (a host name or an IP address)?"""
    try:
        address = ipaddress.ip_address(wanted)
    except ValueError:
        return any(covers(name.lower(), wanted) for name in names)
    return any(_same_address(name, address) for name in names)


def _same_address(name: str, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    try:
        return ipaddress.ip_address(name.strip()) == address
    except ValueError:
        return False
