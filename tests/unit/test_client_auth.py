"""Client certificate authentication without I/O: the server name of a peeked ClientHello (real
hellos from the ssl module, cut and spoiled), the per-request decision as nginx makes it, the
RFC 2253 names and the escaped certificate of the ssl-client-* headers."""

from __future__ import annotations

import re
import ssl
import struct
from urllib.parse import unquote

import pytest

from proxy.core.client_auth import (
    ALLOWED,
    MISDIRECTED,
    NO_CERTIFICATE,
    REFUSED,
    UNAUTHORIZED,
    VERIFY_OFF,
    VERIFY_OPTIONAL,
    ClientAuth,
    PeerCertificate,
    certificate_refusal,
    escaped_pem,
    rfc2253,
    upstream_headers,
)
from proxy.core.client_hello import HEADER, RECORD_LIMIT, record_length, server_name


def client_hello(name: str | None) -> bytes:
    """The first flight of a real TLS client (the ssl module's, through memory BIOs)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = context.wrap_bio(incoming, outgoing, server_side=False, server_hostname=name)
    with pytest.raises(ssl.SSLWantReadError):
        client.do_handshake()
    return outgoing.read()


def test_the_server_name_of_a_real_client_hello() -> None:
    hello = client_hello("Auth.Example.COM")
    length = record_length(hello)
    assert length == len(hello)
    assert server_name(hello[:length]) == "auth.example.com"  # (lower case, as hosts are here)


def test_a_hello_without_server_name() -> None:
    hello = client_hello(None)  # (an IP address or no name: no SNI extension)
    assert record_length(hello) == len(hello)
    assert server_name(hello) is None


def test_a_record_still_arriving_asks_for_more() -> None:
    hello = client_hello("a.example")
    for cut in range(HEADER):
        assert record_length(hello[:cut]) is None  # (the header decides how much to wait for)
    assert record_length(hello[:HEADER]) == len(hello)


def test_every_truncation_of_the_record_has_no_name() -> None:
    hello = client_hello("a.example")
    length = len(hello)
    body = hello[HEADER:]
    for cut in range(len(body)):
        # a record header that claims only what is there: the hello inside is cut short
        record = hello[:3] + struct.pack(">H", cut) + body[:cut]
        assert server_name(record) in (None, "a.example")
    assert server_name(hello[: length - 1]) in (None, "a.example")


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",  # plain HTTP on the TLS port
        b"\x16\x02\x00\x00\x10" + b"\x00" * 16,  # SSL 2-ish version
        b"\x16\x03\x01\x00\x00",  # an empty record
        b"\x16\x03\x01\xff\xff",  # longer than a record may be
    ],
)
def test_what_is_no_tls_record_is_handed_over_at_once(data: bytes) -> None:
    assert record_length(data) == 0


def test_garbage_records_have_no_name() -> None:
    hello = client_hello("a.example")
    assert server_name(hello[:HEADER] + b"\x02" + hello[HEADER + 1 :]) is None  # not a hello
    spoiled = bytearray(hello)
    for at in range(HEADER, len(hello), 7):
        spoiled[at] ^= 0xFF  # whatever this does, it must not raise
        server_name(bytes(spoiled))
    assert RECORD_LIMIT >= 16384 + HEADER


def test_a_non_ascii_server_name_is_none() -> None:
    hello = client_hello("a.example")
    at = hello.index(b"a.example")
    assert server_name(hello[:at] + b"\xe4.example" + hello[at + 9 :]) is None


AUTH = ClientAuth("Secret ns/ca", b"CA")
PEER = PeerCertificate(b"\x30\x03\x02\x01\x01", "CN=authtls,O=Example", "CN=ca")


def test_verify_on_needs_a_certificate() -> None:
    assert certificate_refusal(AUTH, True, AUTH, PEER) == ALLOWED
    assert certificate_refusal(AUTH, True, AUTH, None) == NO_CERTIFICATE
    assert certificate_refusal(AUTH, False, None, None) == NO_CERTIFICATE  # (plain HTTP)


def test_optional_and_off_serve_without_one() -> None:
    optional = ClientAuth("Secret ns/ca", b"CA", verify=VERIFY_OPTIONAL)
    off = ClientAuth("Secret ns/ca", b"CA", verify=VERIFY_OFF)
    assert certificate_refusal(optional, True, optional, None) == ALLOWED
    assert certificate_refusal(off, True, None, None) == ALLOWED
    assert not off.asks and optional.asks and AUTH.asks


def test_a_handshake_for_another_host_is_misdirected() -> None:
    other = ClientAuth("Secret ns/other", b"OTHER CA")
    assert certificate_refusal(AUTH, True, other, PEER) == MISDIRECTED  # another CA's
    assert certificate_refusal(AUTH, True, None, None) == MISDIRECTED  # one asking none
    same = ClientAuth("Secret ns/ca", b"CA")  # (equal settings of another snapshot)
    assert certificate_refusal(AUTH, True, same, PEER) == ALLOWED


def test_match_cn_searches_the_subject() -> None:
    def matching(pattern: str) -> ClientAuth:
        return ClientAuth("Secret ns/ca", b"CA", verify=VERIFY_OPTIONAL,
                          match_cn=re.compile(pattern))  # fmt: skip

    for pattern, expected in [
        ("CN=authtls", ALLOWED),
        ("CN=(itwillmatch|withthenextoption|authtls)", ALLOWED),
        ("CN=notgonnamatch", UNAUTHORIZED),
        ("CN=AUTHTLS", UNAUTHORIZED),  # (nginx's `!~` is case-sensitive)
    ]:
        auth = matching(pattern)
        assert certificate_refusal(auth, True, auth, PEER) == expected
    auth = matching("CN=authtls")
    assert certificate_refusal(auth, True, auth, None) == UNAUTHORIZED  # no subject matches nothing


def test_an_unusable_secret_refuses_everything() -> None:
    broken = ClientAuth("Secret ns/ca", b"", refused="no ca.crt")
    assert certificate_refusal(broken, True, None, PEER) == REFUSED
    assert not broken.asks


def test_headers_replace_what_the_client_sent() -> None:
    sent = [(b"SSL-Client-Verify", b"SUCCESS"), (b"ssl-client-subject-dn", b"CN=admin"),
            (b"ssl-client-cert", b"forged"), (b"Accept", b"*/*")]  # fmt: skip
    assert upstream_headers(AUTH, None, sent) == [(b"Accept", b"*/*"),
                                                 (b"ssl-client-verify", b"NONE")]  # fmt: skip
    assert upstream_headers(AUTH, PEER, sent) == [
        (b"Accept", b"*/*"),
        (b"ssl-client-verify", b"SUCCESS"),
        (b"ssl-client-subject-dn", b"CN=authtls,O=Example"),
        (b"ssl-client-issuer-dn", b"CN=ca"),
    ]
    passing = ClientAuth("Secret ns/ca", b"CA", pass_certificate=True)
    names = [name for name, _ in upstream_headers(passing, PEER, sent)]
    assert names == [b"Accept", b"ssl-client-cert", b"ssl-client-verify",
                     b"ssl-client-subject-dn", b"ssl-client-issuer-dn"]  # fmt: skip


def test_the_escaped_certificate_is_nginxs() -> None:
    escaped = escaped_pem(PEER.der)
    assert escaped.startswith("-----BEGIN%20CERTIFICATE-----%0A")  # the Go e2e test's check
    assert unquote(escaped) == ssl.DER_cert_to_PEM_cert(PEER.der)
    assert re.fullmatch(r"[A-Za-z0-9._~%-]+", escaped)  # + / = are escaped too


def test_rfc2253_names_as_openssl_prints_them() -> None:
    subject = (
        (("countryName", "US"),),
        (("organizationName", "Example, Inc."),),
        (("organizationalUnitName", "a+b"), ("commonName", "x")),
        (("commonName", " #authtls "),),
    )
    assert rfc2253(subject) == r"CN=\ #authtls\ ,OU=a\+b+CN=x,O=Example\, Inc.,C=US"
    assert rfc2253(((("commonName", "#é"),),)) == r"CN=\#\C3\A9"
    unnamed = ((("emailAddress", "a@b"),), (("1.2.3.4", "v"),))
    assert rfc2253(unnamed) == "1.2.3.4=v,emailAddress=a@b"
