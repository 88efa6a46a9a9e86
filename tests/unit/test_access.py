"""Access by client address, without I/O: the *-source-range lists as ingress-nginx parses them
(internal/ingress/annotations/ipallowlist, ipdenylist; internal/net/ipnet.go), the deny-then-allow
order nginx.tmpl writes, and the client address as nginx's realip module takes it with
`real_ip_recursive on`."""

from __future__ import annotations

from ipaddress import ip_network

import pytest

from proxy.core.access import DEFAULT_TRUSTED, AccessList, RealIp, parse_ranges
from tests.unit.kube_fixtures import parsed

XFF = b"x-forwarded-for"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("18.0.0.0/8, 56.0.0.0/8", ["18.0.0.0/8", "56.0.0.0/8"]),
        ("56.0.0.1", ["56.0.0.1/32"]),  # a bare address is itself
        ("10.1.2.3/8", ["10.0.0.0/8"]),  # Go's ParseCIDR clears the host bits
        ("2001:db8::/32,::1", ["2001:db8::/32", "::1/128"]),
        ("10.0.0.0/8,10.0.0.0/8", ["10.0.0.0/8"]),
    ],
)
def test_ranges_parse_as_ingress_nginx_does(text: str, expected: list[str]) -> None:
    assert parse_ranges(text) == tuple(ip_network(network) for network in expected)


@pytest.mark.parametrize(
    "text",
    [
        "10",
        "10.0.0.0/33",
        "10.0.0.0/255.0.0.0",  # netmask form: Go refuses it
        "fe80::1%eth0",
        "10.0.0.0/8,",  # an empty element is an error there too
        "10.0.0.0/8, example.com",
        "010.0.0.1",
    ],
)
def test_one_bad_range_refuses_the_list(text: str) -> None:
    with pytest.raises(ValueError, match="is not an IP address or CIDR range"):
        parse_ranges(text)


def test_the_deny_list_comes_first_then_the_allow_list_then_deny_all() -> None:
    access = AccessList(
        deny=parse_ranges("18.1.0.0/16, 56.0.0.0/8"), allow=parse_ranges("18.0.0.0/8, 55.0.0.0/8")
    )
    assert not access.allows(b"18.1.0.1")  # denied, though inside an allowed range
    assert not access.allows(b"10.10.10.10")  # in neither: deny all
    assert access.allows(b"18.4.0.1")
    assert access.allows(b"55.55.55.55")


def test_a_deny_list_alone_lets_every_other_address_in() -> None:
    access = AccessList(deny=parse_ranges("18.0.0.0/8, 56.0.0.1"))
    assert not access.allows(b"18.0.0.1")
    assert not access.allows(b"56.0.0.1")
    assert access.allows(b"56.0.0.2")
    assert access.allows(b"2001:db8::1")


def test_ipv6_and_ipv4_mapped_clients() -> None:
    access = AccessList(allow=parse_ranges("2001:db8::/32, 10.0.0.0/8"))
    assert access.allows(b"2001:db8::7")
    assert not access.allows(b"2001:db9::7")
    # a dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d; nginx checks its IPv4 rules
    assert access.allows(b"::ffff:10.1.2.3")
    assert not access.allows(b"::ffff:11.1.2.3")


def test_what_is_no_address_is_refused() -> None:
    assert not AccessList(deny=parse_ranges("10.0.0.0/8")).allows(b"")
    assert not AccessList(deny=parse_ranges("10.0.0.0/8")).allows(b"not-an-address")


def real_ip(trusted: str = DEFAULT_TRUSTED, header: bytes = XFF) -> RealIp:
    return RealIp(header, parse_ranges(trusted))


def test_an_untrusted_peer_is_the_client_whatever_it_sends() -> None:
    headers = [(b"X-Forwarded-For", b"10.1.2.3")]
    assert real_ip("127.0.0.1/32").client(b"127.0.0.9", headers) == b"127.0.0.9"
    # the default trusts every IPv4 address but no IPv6 one, as ingress-nginx's
    assert real_ip().client(b"::1", headers) == b"::1"


def test_the_last_address_a_trusted_proxy_did_not_add_is_the_client() -> None:
    trusted = real_ip("127.0.0.1/32, 192.168.0.0/16")
    spoofed = [(b"X-Forwarded-For", b"10.1.2.3, 203.0.113.7, 192.168.1.1")]
    # 192.168.1.1 is a trusted hop; 203.0.113.7 is not, so what it claims does not count
    assert trusted.client(b"127.0.0.1", spoofed) == b"203.0.113.7"
    assert trusted.client(b"127.0.0.1", [(b"x-forwarded-for", b"10.1.2.3")]) == b"10.1.2.3"


def test_every_hop_trusted_gives_the_first() -> None:
    headers = [(b"X-Forwarded-For", b"10.0.0.1, 10.0.0.2")]
    assert real_ip().client(b"127.0.0.1", headers) == b"10.0.0.1"


def test_an_unreadable_hop_ends_the_walk() -> None:
    trusted = real_ip("127.0.0.1/32, 10.0.0.0/8")
    headers = [(b"X-Forwarded-For", b"198.51.100.1, unknown, 10.0.0.2")]
    assert trusted.client(b"127.0.0.1", headers) == b"10.0.0.2"
    assert trusted.client(b"127.0.0.1", [(b"X-Forwarded-For", b"garbage")]) == b"127.0.0.1"
    empty = [(b"X-Forwarded-For", b"198.51.100.1,, 10.0.0.2, ")]
    assert trusted.client(b"127.0.0.1", empty) == b"198.51.100.1"


def test_hops_with_ports_and_several_headers() -> None:
    trusted = real_ip("127.0.0.1/32, 10.0.0.0/8")
    headers = [(b"X-Forwarded-For", b"198.51.100.1:4711"), (b"X-Forwarded-For", b"[::1]:80")]
    # the two headers are one list; [::1] is not trusted, so it is the client
    assert trusted.client(b"127.0.0.1", headers) == b"::1"
    headers = [(b"X-Forwarded-For", b"198.51.100.1:4711"), (b"X-Forwarded-For", b"10.0.0.9")]
    assert trusted.client(b"127.0.0.1", headers) == b"198.51.100.1"


def test_another_header_counts_once_and_forwarded_for_is_then_ignored() -> None:
    header = real_ip(header=b"x-real-ip")
    headers = [
        (b"X-Forwarded-For", b"10.9.9.9"),
        (b"X-Real-IP", b"203.0.113.5"),
        (b"X-Real-IP", b"203.0.113.6"),
    ]
    assert header.client(b"127.0.0.1", headers) == b"203.0.113.5"
    assert header.client(b"127.0.0.1", [(b"X-Forwarded-For", b"10.9.9.9")]) == b"127.0.0.1"


def test_allowlist_source_range_wins_over_its_older_name() -> None:
    settings = parsed(allowlist_source_range="10.0.0.0/8", whitelist_source_range="11.0.0.0/8")
    assert settings.access == AccessList(allow=parse_ranges("10.0.0.0/8"))
    assert settings.warnings == ()
    older = parsed(allowlist_source_range="", whitelist_source_range="11.0.0.0/8")
    assert older.access == AccessList(allow=parse_ranges("11.0.0.0/8"))


def test_both_lists_and_none() -> None:
    both = parsed(denylist_source_range="18.1.0.0/16", whitelist_source_range="18.0.0.0/8")
    expected = AccessList(deny=parse_ranges("18.1.0.0/16"), allow=parse_ranges("18.0.0.0/8"))
    assert both.access == expected
    assert both.denied is None
    assert parsed().access is None


def test_an_invalid_list_closes_the_ingress_instead_of_opening_it() -> None:
    settings = parsed(allowlist_source_range="10.0.0.0/8, nonsense")
    assert settings.access is None
    assert settings.denied is not None
    assert settings.warnings == (
        "nginx.ingress.kubernetes.io/allowlist-source-range: 'nonsense' is not an IP address or"
        " CIDR range; its paths answer 503",
    )


def test_the_verdict_tells_an_allow_rule_from_no_rule() -> None:
    """satisfy any needs nginx's three outcomes (docs/behaviour.md, "satisfy")."""
    both = AccessList(deny=parse_ranges("10.0.0.1"), allow=parse_ranges("10.0.0.0/8"))
    assert [both.verdict(a) for a in (b"10.0.0.1", b"10.0.0.2", b"11.0.0.1")] == [
        False, True, False,
    ]  # fmt: skip
    deny_only = AccessList(deny=parse_ranges("10.0.0.1"))
    assert [deny_only.verdict(a) for a in (b"10.0.0.1", b"10.0.0.2", b"nonsense")] == [
        False, None, False,
    ]  # fmt: skip
    assert deny_only.allows(b"10.0.0.2") and not deny_only.allows(b"10.0.0.1")


def test_satisfy_is_any_or_all_case_sensitive() -> None:
    assert parsed(satisfy="any").satisfy_any
    assert not parsed(satisfy="all").satisfy_any
    assert not parsed().satisfy_any
    settings = parsed(satisfy="Any")
    assert not settings.satisfy_any
    assert settings.warnings == (
        "nginx.ingress.kubernetes.io/satisfy: 'Any' is not any or all; ignored",
    )
