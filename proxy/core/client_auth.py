"""Client certificate authentication of a host (the auth-tls-* annotations): what each request
is checked against, and the ssl-client-* headers the upstream gets. Pure: no I/O.

The TLS handshake (proxy/dataplane/tls_contexts.py) already refused any certificate that does
not verify against the host's CA; what is left per request is nginx's: a certificate was asked
for but none came (496), the request's host is not the one the handshake was for (421), the
subject does not match auth-tls-match-cn (403).
See docs/behaviour.md, "Client certificate authentication".
"""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass
from http import HTTPStatus
from typing import Final
from urllib.parse import quote

from proxy.core.errors import error_response, redirect_response
from proxy.core.headers import Headers

VERIFY_ON: Final = "on"
VERIFY_OFF: Final = "off"
VERIFY_OPTIONAL: Final = "optional"
VERIFY_OPTIONAL_NO_CA: Final = "optional_no_ca"

# What `certificate_refusal` finds: the request goes on, or why not
ALLOWED: Final = 0
MISDIRECTED: Final = 1  # the handshake was for another host (nginx: 421)
NO_CERTIFICATE: Final = 2  # none sent, one required (nginx's internal 496: a 400)
UNAUTHORIZED: Final = 3  # auth-tls-match-cn does not match (403)
REFUSED: Final = 4  # the host's CA Secret is unusable: nginx's `return 403` for every request

# The request headers ingress-nginx sets on hosts with a CA (nginx.tmpl's proxy_set_header)
CLIENT_CERT: Final = b"ssl-client-cert"
CLIENT_VERIFY: Final = b"ssl-client-verify"
CLIENT_SUBJECT: Final = b"ssl-client-subject-dn"
CLIENT_ISSUER: Final = b"ssl-client-issuer-dn"
_SET_HERE: Final = frozenset({CLIENT_CERT, CLIENT_VERIFY, CLIENT_SUBJECT, CLIENT_ISSUER})


@dataclass(frozen=True, slots=True)
class ClientAuth:
    """One host's auth-tls settings, as the first Ingress of the host that names a CA gives
    them (ingress-nginx: a server-level setting)."""

    source: str  # "Secret namespace/name", for logs
    ca: bytes  # ca.crt: the PEM certificates a client's certificate must chain to
    crl: bytes | None = None  # ca.crl: PEM revocation lists
    verify: str = VERIFY_ON  # on, optional, optional_no_ca (checked as optional), off
    error_page: str = ""  # a URL answered with 302 instead of the 400; "" for none
    pass_certificate: bool = False  # auth-tls-pass-certificate-to-upstream
    match_cn: re.Pattern[str] | None = None  # auth-tls-match-cn, searched in the subject DN
    refused: str | None = None  # why every request of the host answers 403 instead

    @property
    def asks(self) -> bool:
        """Whether the handshake asks the client for a certificate."""
        return self.verify != VERIFY_OFF and self.refused is None


@dataclass(frozen=True, slots=True)
class PeerCertificate:
    """The client's certificate, once the handshake verified it."""

    der: bytes
    subject: str  # RFC 2253, as nginx's $ssl_client_s_dn
    issuer: str  # $ssl_client_i_dn


def certificate_refusal(
    auth: ClientAuth, tls: bool, negotiated: ClientAuth | None, peer: PeerCertificate | None
) -> int:
    """ALLOWED when the request may go on, else why not (the constants above). `negotiated` is
    the auth of the host the handshake was for (None: a host without one, or no server name);
    a plain-HTTP request has neither, and a certificate is then as missing as over TLS."""
    if auth.refused is not None:
        return REFUSED
    if tls and auth.verify != VERIFY_OFF and negotiated != auth:
        # nginx: a Host whose server verifies clients, other than the SNI's server, is 421
        return MISDIRECTED
    if peer is None and auth.verify == VERIFY_ON:
        return NO_CERTIFICATE
    if auth.match_cn is not None and not auth.match_cn.search(peer.subject if peer else ""):
        return UNAUTHORIZED
    return ALLOWED


def answer_status(why: int, auth: ClientAuth) -> int:
    """The status a refusal is answered with: nginx's 496 is a 400, or with auth-tls-error-page
    (`error_page 495 496 = URL`) a 302 there."""
    if why == NO_CERTIFICATE:
        return 302 if auth.error_page else 400
    return 421 if why == MISDIRECTED else 403


def refusal_answer(why: int, auth: ClientAuth, close: bool) -> bytes:
    """The whole answer to a refused request (the texts are nginx's)."""
    status = answer_status(why, auth)
    if status == 302:
        return redirect_response(auth.error_page.encode("latin-1"), close, status=302)
    if why == NO_CERTIFICATE:
        text = b"400 No required SSL certificate was sent\n"
    elif why == UNAUTHORIZED:
        text = b"client certificate unauthorized"  # ingress-nginx's `return 403 "..."`
    else:
        return error_response(status, close)
    return (
        b"HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\n"
        b"Connection: %s\r\n\r\n%s"
        % (status, HTTPStatus(status).phrase.encode(), len(text),
           b"close" if close else b"keep-alive", text)
    )  # fmt: skip


def upstream_headers(auth: ClientAuth, peer: PeerCertificate | None, forward: Headers) -> Headers:
    """`forward` with the ssl-client-* headers set as ingress-nginx sets them; any a client
    sent itself are dropped, so the upstream never takes them for ours."""
    headers = [(name, value) for name, value in forward if name.lower() not in _SET_HERE]
    if peer is None:
        headers.append((CLIENT_VERIFY, b"NONE"))  # (empty DNs: nginx sends no such header)
        return headers
    if auth.pass_certificate:
        headers.append((CLIENT_CERT, escaped_pem(peer.der).encode("ascii")))
    headers.append((CLIENT_VERIFY, b"SUCCESS"))
    headers.append((CLIENT_SUBJECT, peer.subject.encode("utf-8")))
    headers.append((CLIENT_ISSUER, peer.issuer.encode("utf-8")))
    return headers


def escaped_pem(der: bytes) -> str:
    """nginx's $ssl_client_escaped_cert: the PEM, every byte but letters, digits and -._~
    percent-encoded (ngx_escape_uri's component table)."""
    return quote(ssl.DER_cert_to_PEM_cert(der), safe="")


# OpenSSL's short names for the attributes Python's getpeercert() gives by long name
_SHORT_NAMES: Final = {
    "countryName": "C",
    "stateOrProvinceName": "ST",
    "localityName": "L",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "commonName": "CN",
    "domainComponent": "DC",
    "userId": "UID",
    "streetAddress": "street",
    "givenName": "GN",
    "surname": "SN",
}
_SPECIAL: Final = frozenset(',+"\\<>;')

Rdns = tuple[tuple[tuple[str, str], ...], ...]  # getpeercert()'s "subject" and "issuer"


def rfc2253(name: Rdns) -> str:
    """A distinguished name as OpenSSL's RFC 2253 printing (nginx's $ssl_client_s_dn): the last
    RDN first, short attribute names, special characters backslash-escaped, control and
    non-ASCII bytes as \\XX."""
    return ",".join(
        "+".join(f"{_SHORT_NAMES.get(kind, kind)}={_escaped(value)}" for kind, value in rdn)
        for rdn in reversed(name)
    )


def _escaped(value: str) -> str:
    out = []
    last = len(value) - 1
    for at, char in enumerate(value):
        code = ord(char)
        if code < 0x20 or code == 0x7F or code > 0x7F:
            out.append("".join(f"\\{byte:02X}" for byte in char.encode("utf-8")))
        elif char in _SPECIAL or (char == "#" and at == 0) or (char == " " and at in (0, last)):
            out.append("\\" + char)
        else:
            out.append(char)
    return "".join(out)
