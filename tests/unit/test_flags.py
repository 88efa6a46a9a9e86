"""Command-line value parsers, table-driven: what each accepts, and that the rest is refused."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from proxy.core.values import (
    NEXT_UPSTREAM_CONDITIONS,
    Address,
    format_bool,
    format_next_upstream,
    format_seconds,
    format_size,
    parse_bool,
    parse_cookie_domain,
    parse_cookie_name,
    parse_cookie_path,
    parse_count,
    parse_host,
    parse_host_port,
    parse_next_upstream,
    parse_object_name,
    parse_port,
    parse_positive,
    parse_seconds,
    parse_size,
    parse_timeout,
    parse_workers,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0.0.0.0:8080", Address("0.0.0.0", 8080)),
        ("127.0.0.1:0", Address("127.0.0.1", 0)),
        ("localhost:65535", Address("localhost", 65535)),
        ("proxy.example.com:80", Address("proxy.example.com", 80)),
        ("[::1]:8080", Address("::1", 8080)),
        ("[::]:10254", Address("::", 10254)),
        ("[fe80::1%eth0]:80", Address("fe80::1%eth0", 80)),
    ],
)
def test_host_port_accepts(text: str, expected: Address) -> None:
    assert parse_host_port(text) == expected


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("8080", "is not HOST:PORT"),
        (":8080", "is not HOST:PORT"),
        ("", "is not HOST:PORT"),
        ("localhost", "is not HOST:PORT"),
        ("localhost:", "is not a port"),
        ("localhost:http", "is not a port"),
        ("localhost:65536", "is not a port"),
        ("localhost:-1", "is not a port"),
        ("localhost: 80", "is not a port"),
        ("::1:8080", "needs brackets"),
        ("[::1]8080", "needs brackets"),
        ("[nope]:80", "is not an IPv6 address"),
        ("[1.2.3.4]:80", "is not an IPv6 address"),
        ("1.2.3:80", "is not an IPv4 address"),
        ("256.1.1.1:80", "is not an IPv4 address"),
        ("exa mple:80", "is not a host name"),
        ("http://x:80", "is not HOST:PORT"),
        ("-bad-:80", "is not a host name"),
    ],
)
def test_host_port_refuses(text: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        parse_host_port(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("a", "a"), ("a-b.c", "a-b.c"), ("fqdn.example.", "fqdn.example."), ("10.0.0.1", "10.0.0.1")],
)
def test_host_accepts(text: str, expected: str) -> None:
    assert parse_host(text) == expected


@pytest.mark.parametrize(
    ("text", "allow_zero", "expected"),
    [("0", True, 0), ("1", False, 1), ("80", False, 80), ("65535", True, 65535)],
)
def test_port_accepts(text: str, allow_zero: bool, expected: int) -> None:
    assert parse_port(text, allow_zero=allow_zero) == expected


@pytest.mark.parametrize(("text", "allow_zero"), [("0", False), ("65536", True), ("+1", True)])
def test_port_refuses(text: str, allow_zero: bool) -> None:
    with pytest.raises(ValueError, match="is not a port"):
        parse_port(text, allow_zero=allow_zero)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0),
        ("1024", 1024),
        ("8k", 8 * 1024),
        ("8K", 8 * 1024),
        ("1m", 1024 * 1024),
        ("1M", 1024 * 1024),
        ("2g", 2 * 1024**3),
        ("2G", 2 * 1024**3),
        ("0m", 0),
    ],
)
def test_size_accepts(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "12x", "1.5m", "-1", "m", "1 m", "1mb", "1kk", " 1"])
def test_size_refuses(text: str) -> None:
    with pytest.raises(ValueError, match=r"is not a size \(examples: 1024, 8k, 1m"):
        parse_size(text)


@pytest.mark.parametrize(
    ("parse", "text", "expected"),
    [
        (parse_seconds, "0", 0.0),
        (parse_seconds, "30", 30.0),
        (parse_seconds, "0.5", 0.5),
        (parse_timeout, "5", 5.0),
        (parse_timeout, "0.25", 0.25),
        (parse_count, "0", 0),
        (parse_count, "3", 3),
        (parse_positive, "1", 1),
        (parse_positive, "12", 12),
        (parse_bool, "true", True),
        (parse_bool, "false", False),
        (parse_bool, "True", True),
        (parse_bool, "FALSE", False),
    ],
)
def test_scalars_accept(parse: Callable[[str], Any], text: str, expected: object) -> None:
    assert parse(text) == expected


@pytest.mark.parametrize(
    ("parse", "text", "complaint"),
    [
        (parse_seconds, "", "is not a number of seconds"),
        (parse_seconds, "-1", "is not a number of seconds"),
        (parse_seconds, "5s", "is not a number of seconds"),
        (parse_seconds, "inf", "is not a number of seconds"),
        (parse_seconds, "nan", "is not a number of seconds"),
        (parse_seconds, "1e3", "is not a number of seconds"),
        (parse_seconds, ".5", "is not a number of seconds"),
        (parse_timeout, "0", "more than 0"),
        (parse_timeout, "0.0", "more than 0"),
        (parse_count, "-1", "is not a whole number"),
        (parse_count, "1.5", "is not a whole number"),
        (parse_count, "", "is not a whole number"),
        (parse_positive, "0", "above 0"),
        (parse_positive, "three", "above 0"),
        (parse_bool, "yes", "is not a boolean"),
        (parse_bool, "1", "is not a boolean"),
        (parse_bool, "", "is not a boolean"),
    ],
)
def test_scalars_refuse(parse: Callable[[str], Any], text: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        parse(text)


@pytest.mark.parametrize(("text", "expected"), [("1", 1), ("4", 4), ("auto", 8)])
def test_workers_accepts(text: str, expected: int) -> None:
    assert parse_workers(text, cpu_count=8) == expected


@pytest.mark.parametrize("text", ["0", "-1", "Auto", "two", ""])
def test_workers_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="is not a worker count"):
        parse_workers(text, cpu_count=8)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("error timeout", {"error", "timeout"}),
        ("  error   timeout ", {"error", "timeout"}),
        ("http_502 http_502", {"http_502"}),
        ("off", set()),
        (" ".join(sorted(NEXT_UPSTREAM_CONDITIONS)), NEXT_UPSTREAM_CONDITIONS),
    ],
)
def test_next_upstream_accepts(text: str, expected: set[str]) -> None:
    assert parse_next_upstream(text) == frozenset(expected)


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("", "no conditions"),
        ("   ", "no conditions"),
        ("error http_501", "unknown condition 'http_501'"),
        ("error,timeout", "unknown condition 'error,timeout'"),
        ("ERROR", "unknown condition 'ERROR'"),
        ("off error", "'off' cannot be combined"),
    ],
)
def test_next_upstream_refuses(text: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        parse_next_upstream(text)


@pytest.mark.parametrize(
    ("parse", "text"),
    [
        (parse_cookie_name, "INGRESSCOOKIE"),
        (parse_cookie_name, "route_id-2.x"),
        (parse_cookie_path, "/"),
        (parse_cookie_path, "/app/v1"),
        (parse_cookie_domain, "example.com"),
        (parse_cookie_domain, ".example.com"),
    ],
)
def test_cookie_attributes_accept(parse: Callable[[str], str], text: str) -> None:
    assert parse(text) == text


@pytest.mark.parametrize(
    ("parse", "text"),
    [
        (parse_cookie_name, ""),
        (parse_cookie_name, "a b"),
        (parse_cookie_name, "a=b"),
        (parse_cookie_name, "a;b"),
        (parse_cookie_path, ""),
        (parse_cookie_path, "app"),
        (parse_cookie_path, "/a;Domain=evil"),
        (parse_cookie_path, "/a b"),
        (parse_cookie_domain, ""),
        (parse_cookie_domain, "a;b"),
        (parse_cookie_domain, "example.com."),
        (parse_cookie_domain, "..example.com"),
    ],
)
def test_cookie_attributes_refuse(parse: Callable[[str], str], text: str) -> None:
    with pytest.raises(ValueError, match="is not a cookie"):
        parse(text)


@pytest.mark.parametrize("text", ["sticky", "nginx", "a", "ingress-nginx.k8s.io", "x1", "a" * 253])
def test_object_name_accepts(text: str) -> None:
    assert parse_object_name(text) == text


@pytest.mark.parametrize(
    "text", ["", "Nginx", "-sticky", "sticky-", "a..b", "a_b", "a b", ".a", "a" * 254]
)
def test_object_name_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="is not a Kubernetes name"):
        parse_object_name(text)


@pytest.mark.parametrize(
    ("value", "text", "parse", "format_"),
    [
        (1024 * 1024, "1m", parse_size, format_size),
        (3 * 1024**3, "3g", parse_size, format_size),
        (8 * 1024, "8k", parse_size, format_size),
        (1000, "1000", parse_size, format_size),
        (0, "0", parse_size, format_size),
        (60.0, "60", parse_seconds, format_seconds),
        (0.5, "0.5", parse_seconds, format_seconds),
        (False, "false", parse_bool, format_bool),
        (True, "true", parse_bool, format_bool),
        (frozenset({"timeout", "error"}), "error timeout", parse_next_upstream,
         format_next_upstream),
        (frozenset(), "off", parse_next_upstream, format_next_upstream),
    ],
)  # fmt: skip
def test_defaults_are_shown_as_the_flags_spell_them(
    value: object, text: str, parse: Callable[[str], Any], format_: Callable[[Any], str]
) -> None:
    """The CLI shows each default from the settings dataclasses with these: what it shows must
    read back as the very default."""
    assert format_(value) == text
    assert parse(text) == value
