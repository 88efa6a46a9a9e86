"""Cookie text: lua-resty-cookie parsing, value split, backend key, new keys, Set-Cookie layout
and the SameSite user-agent rules, as docs/ingress-nginx-compat.md describes them."""

from __future__ import annotations

import json
import random
import string
from pathlib import Path
from typing import Any

import pytest

from proxy.core.cookies import (
    CookieSettings,
    SetCookieFormatter,
    backend_key,
    cookie_date,
    new_balanced_key,
    parse_cookie,
    samesite_none_incompatible,
    split_value,
    upstream_key,
)
from tests.fixed_random import FixedRandom

FIXTURES = Path(__file__).parent.parent / "fixtures"
PERSISTENT: dict[str, Any] = json.loads((FIXTURES / "persistent_vectors.json").read_text())
CHASH: dict[str, Any] = json.loads((FIXTURES / "chash_vectors.json").read_text())

WEB_KEY = "6cde5721ec2c7e2bce07cff7d0e4ac37"  # backend_key("default-web-80")


# --- parse_cookie ------------------------------------------------------------------------------


def lua_cookie_table(text: str) -> dict[str, str]:
    """A line-by-line port of lua-resty-cookie's get_cookie_table (commit f418d770): the slow,
    obviously faithful reference the fast parser is fuzzed against."""
    expect_key, expect_value, expect_sp = 1, 2, 3
    table: dict[str, str] = {}
    state, i, j = expect_sp, 0, 0
    key: str | None = None
    while j < len(text):
        char = text[j]
        if state == expect_key:
            if char == "=":
                key, state, i = text[i:j], expect_value, j + 1
        elif state == expect_value:
            if char in "; \t":
                assert key is not None
                table[key] = text[i:j]
                key, state, i = None, expect_sp, j + 1
        elif char not in " \t":
            state, i, j = expect_key, j, j - 1
        j += 1
    if key is not None:
        table[key] = text[i:]
    return table


PARSE_CASES = [
    # (header, name, expected value)
    ("INGRESSCOOKIE=abc", "INGRESSCOOKIE", "abc"),
    ("a=1; INGRESSCOOKIE=K|B; c=3", "INGRESSCOOKIE", "K|B"),
    ("a=1;INGRESSCOOKIE=K", "INGRESSCOOKIE", "K"),
    ("   route=K", "route", "K"),
    ("a=1\troute=K", "route", "K"),  # a tab ends a value too
    ("route=K x=1", "route", "K"),  # and so does a space
    ("route=K x=1", "x", "1"),
    ("route=K;", "route", "K"),
    ("", "route", None),
    ("other=1", "route", None),
    ("Route=K", "route", None),  # names are case-sensitive
    ("xroute=K", "route", None),
    # The rules of docs/ingress-nginx-compat.md, "Cookie header parsing". Rule 1: a name runs
    # to the next `=`, even across `;` and spaces.
    ("flag; route=K", "route", None),
    ("flag; route=K", "flag; route", "K"),
    ("a=1;;route=K", "route", None),
    ("a=1;;route=K", ";route", "K"),
    # Rule 2: `=` inside a value belongs to it.
    ("a=b=c", "a", "b=c"),
    ("route=a=b; c=d", "route", "a=b"),
    # Rule 3: the separator is consumed only when it ended the value.
    ("a=1 ;b=2", "a", "1"),
    ("a=1 ;b=2", "b", None),
    ("a=1 ;b=2", ";b", "2"),
    # Rule 4: the last occurrence wins, even an empty one.
    ("route=A; route=B", "route", "B"),
    ("route=A|x; other=1; route=B|y; z=2", "route", "B|y"),
    ("route=A; route=", "route", ""),
    # Rule 5: raw values, quotes and percent signs kept.
    ('route="abc"', "route", '"abc"'),
    ("route=a%7Cb", "route", "a%7Cb"),
    # Rule 6: a trailing `name=` is empty; a trailing fragment without `=` is ignored.
    ("a=1; route=", "route", ""),
    ("a=1; route", "route", None),
    ("route", "route", None),
    # names that can never be a token name
    ("a=b=c", "a=b", None),
    ("x= route=K", " route", None),
    # an empty name is a legal (if odd) token name
    ("=K", "", "K"),
    # several Cookie lines, joined by the caller with "; " as nginx does
    ("a=1; b=2; route=K", "route", "K"),
]


@pytest.mark.parametrize(("header", "name", "expected"), PARSE_CASES)
def test_parse_cookie(header: str, name: str, expected: str | None) -> None:
    assert parse_cookie(header, name) == expected
    assert lua_cookie_table(header).get(name) == expected  # the reference agrees with the table


def test_parse_cookie_big_and_many() -> None:
    junk = "x=" + "y" * 4096
    assert parse_cookie(f"{junk}; route=K", "route") == "K"
    many = "; ".join(f"c{i}=v{i}" for i in range(3000))
    assert parse_cookie(f"{many}; route=K; {many}", "route") == "K"
    assert parse_cookie(many, "c2999") == "v2999"
    assert parse_cookie(many, "route") is None


def test_parse_cookie_matches_lua_on_random_headers() -> None:
    """Seeded fuzz over the characters that matter to the state machine."""
    rng = random.Random(20240601)
    alphabet = 'ab=; \t|"\xe9'
    names = ["a", "b", "ab", ";b", "", "a b", "b;", "\xe9"]
    for _ in range(20_000):
        header = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 16)))
        table = lua_cookie_table(header)
        for name in names:
            assert parse_cookie(header, name) == table.get(name), (header, name)


def test_parse_cookie_matches_lua_on_random_browser_style_headers() -> None:
    """Seeded fuzz over "; "-joined pieces, the shape parse_cookie reads without its regex, with
    the pieces that leave that shape (no `=`, empty, blanks inside) mixed in."""
    rng = random.Random(20261203)
    pieces = ["a=1", "b=2", "ab=x|y", "a=", "=v", "a=b=c", "b", "", "a b=1", "\xe9=\xe9", "b;=1"]
    names = ["a", "b", "ab", "", "a b", "\xe9", "b;"]
    for _ in range(20_000):
        header = "; ".join(rng.choice(pieces) for _ in range(rng.randint(1, 6)))
        table = lua_cookie_table(header)
        for name in names:
            assert parse_cookie(header, name) == table.get(name), (header, name)


# --- split_value / upstream_key ----------------------------------------------------------------

SPLIT_CASES = [
    ("K|B", ("K", "B")),
    ("K", ("K", None)),
    ("|K", ("K", None)),
    ("K||B", ("K", "B")),
    ("K|B|X", ("K", "B")),
    ("K|", ("K", None)),
    ("||K||B||", ("K", "B")),
    ("", None),
    ("|", None),
    ("|||", None),
    ('"K"|B', ('"K"', "B")),
]


@pytest.mark.parametrize(("value", "expected"), SPLIT_CASES)
def test_split_value(value: str, expected: tuple[str, str | None] | None) -> None:
    assert split_value(value) == expected
    assert upstream_key(value) == (expected[0] if expected else None)


def test_upstream_key_matches_split_value_on_random_values() -> None:
    rng = random.Random(5)
    for _ in range(5_000):
        value = "".join(rng.choice("ab|") for _ in range(rng.randint(0, 8)))
        split = split_value(value)
        assert upstream_key(value) == (split[0] if split else None), value


# --- backend_key -------------------------------------------------------------------------------

BACKEND_KEYS = [(b["backend_name"], b["backend_key"]) for b in PERSISTENT["backend_keys"]] + [
    (s["backend_name"], s["backend_key"]) for s in CHASH["sets"] + PERSISTENT["sets"]
]


@pytest.mark.parametrize(("backend_name", "expected"), sorted(set(BACKEND_KEYS)))
def test_backend_key(backend_name: str, expected: str) -> None:
    assert backend_key(backend_name) == expected


def test_backend_key_spec_example() -> None:
    assert backend_key("default-web-80") == WEB_KEY


# --- cookie_date -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("epoch", "expected"),
    [
        (1700003600, "Tue, 14-Nov-23 23:13:20 GMT"),  # the Set-Cookie layout example
        (2300000000, "Wed, 19-Nov-2042 08:53:20 GMT"),  # the Expires date example
        (0, "Thu, 01-Jan-70 00:00:00 GMT"),
        (946684799, "Fri, 31-Dec-99 23:59:59 GMT"),
        (946684800, "Sat, 01-Jan-00 00:00:00 GMT"),
        (1709208005, "Thu, 29-Feb-24 12:00:05 GMT"),
        (2145916799, "Thu, 31-Dec-37 23:59:59 GMT"),  # last two-digit year
        (2145916800, "Fri, 01-Jan-2038 00:00:00 GMT"),  # first four-digit year
        (2147483648, "Tue, 19-Jan-2038 03:14:08 GMT"),  # past the 32-bit time_t limit
    ],
)
def test_cookie_date(epoch: int, expected: str) -> None:
    assert cookie_date(epoch) == expected


# --- SameSite user agents (docs/ingress-nginx-compat.md, "SameSite and old user agents") -------

MAC_SAFARI_12 = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_14_6) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/12.1.2 Safari/605.1.15"
)


@pytest.mark.parametrize(
    ("user_agent", "incompatible"),
    [
        (None, False),
        ("", False),
        ("Mozilla/5.0 (X11; Linux x86_64) Chrome/49.0.2623.87 Safari/537.36", True),  # rule 1
        ("Mozilla/5.0 Chrome/51.0.2704.103 Safari/537.36", True),  # rule 2
        ("Mozilla/5.0 Chrome/66.0.3359.139 Safari/537.36", True),  # rule 3
        ("Mozilla/5.0 HeadlessChrome/59.0.3071.115 Safari/537.36", True),  # copied as is
        ("Mozilla/5.0 Chrome/400.0 Safari/537.36", True),  # the prefix test, copied as is
        ("Mozilla/5.0 Chrome/70.0.3538.77 Safari/537.36", False),
        ("Mozilla/5.0 Chrome/120.0.0.0 Safari/537.36", False),
        ("Mozilla/5.0 Chrome/39.0 Safari/537.36", False),
        ("Mozilla/5.0 chrome/51.0 Safari/537.36", False),  # case-sensitive
        ("Mozilla/5.0 (iPhone; CPU iPhone OS 12_4 like Mac OS X) Mobile/15E148", True),  # rule 4
        ("Mozilla/5.0 (iPhone; CPU iPhone OS 13_1 like Mac OS X) Mobile/15E148", False),
        ("Mozilla/5.0 (iPad; CPU OS 12_4 like Mac OS X) Mobile/15E148", True),  # rule 5
        ("Mozilla/5.0 (iPad; CPU OS 13_1 like Mac OS X) Mobile/15E148", False),
        (MAC_SAFARI_12, True),  # rule 6
        (MAC_SAFARI_12.replace("10_14_6", "10_15_7"), False),
        (MAC_SAFARI_12.replace("Safari/605.1.15", "Mobile"), False),  # no Safari
        (MAC_SAFARI_12.replace("Macintosh", "X11"), False),  # no Macintosh
        (MAC_SAFARI_12 + " Chrome/79.0", False),  # Chrome on that Mac is fine (and not 4x-6x)
        (MAC_SAFARI_12 + " Chrome/69.0", True),  # but rule 3 still applies
    ],
)
def test_samesite_none_incompatible(user_agent: str | None, incompatible: bool) -> None:
    assert samesite_none_incompatible(user_agent) is incompatible


# --- Set-Cookie (docs/ingress-nginx-compat.md, "Issuing the cookie") ---------------------------

NOW = 1700000000.123  # the clock of the Set-Cookie layout examples: 1700000000 with ms .123


SPEC_LINES = [
    # four lines the real code printed, clock 1700000000.123, pid 4242, default-web-80
    (
        "spec-line-1",
        CookieSettings(name="route"),
        "/app",
        f"1700000001.123.4242.698852|{WEB_KEY}",
        False,
        f"route=1700000001.123.4242.698852|{WEB_KEY}; Path=/app; HttpOnly",
    ),
    (
        "spec-line-2-https",
        CookieSettings(name="route"),
        "/app",
        f"1700000001.123.4242.590104|{WEB_KEY}",
        True,
        f"route=1700000001.123.4242.590104|{WEB_KEY}; Path=/app; Secure; HttpOnly",
    ),
    (
        "spec-line-3-every-attribute",
        CookieSettings(
            name="SRV",
            path="/p",
            domain=".example.com",
            samesite="None",
            secure=True,
            max_age=7200,
            expires=3600,
        ),
        "/p",
        f"1700000001.123.4242.735739|{WEB_KEY}",
        False,
        f"SRV=1700000001.123.4242.735739|{WEB_KEY}; Expires=Tue, 14-Nov-23 23:13:20 GMT; "
        "Max-Age=7200; Domain=.example.com; Path=/p; Secure; HttpOnly; SameSite=None",
    ),
    (
        "spec-line-4-persistent",
        CookieSettings(name="route"),
        "/app",
        f"f80e698df1ee02ab3cbfca44f7769f63|{WEB_KEY}",
        False,
        f"route=f80e698df1ee02ab3cbfca44f7769f63|{WEB_KEY}; Path=/app; HttpOnly",
    ),
]

# (id, settings, tls, expected attributes after "INGRESSCOOKIE=K|B"), path "/"
ATTRIBUTE_CASES = [
    ("secure-annotation", CookieSettings(secure=True), False, "; Path=/; Secure; HttpOnly"),
    ("secure-both", CookieSettings(secure=True), True, "; Path=/; Secure; HttpOnly"),
    ("max-age-0", CookieSettings(max_age=0), False, "; Max-Age=0; Path=/; HttpOnly"),
    ("max-age-negative", CookieSettings(max_age=-1), False, "; Max-Age=-1; Path=/; HttpOnly"),
    ("empty-domain", CookieSettings(domain=""), False, "; Path=/; HttpOnly"),
    (
        "expires-0-is-now-in-whole-seconds",
        CookieSettings(expires=0),
        False,
        "; Expires=Tue, 14-Nov-23 22:13:20 GMT; Path=/; HttpOnly",
    ),
    (
        "expires-after-2037",
        CookieSettings(expires=600_000_000),
        False,
        "; Expires=Wed, 19-Nov-2042 08:53:20 GMT; Path=/; HttpOnly",
    ),
    ("samesite-lax", CookieSettings(samesite="Lax"), False, "; Path=/; HttpOnly; SameSite=Lax"),
    (
        "samesite-strict",
        CookieSettings(samesite="Strict"),
        False,
        "; Path=/; HttpOnly; SameSite=Strict",
    ),
    ("samesite-lowercase-dropped", CookieSettings(samesite="none"), False, "; Path=/; HttpOnly"),
    ("samesite-uppercase-dropped", CookieSettings(samesite="LAX"), False, "; Path=/; HttpOnly"),
]


@pytest.mark.parametrize(
    ("settings", "path", "value", "tls", "expected"),
    [case[1:] for case in SPEC_LINES],
    ids=[case[0] for case in SPEC_LINES],
)
def test_set_cookie_spec_lines(
    settings: CookieSettings, path: str, value: str, tls: bool, expected: str
) -> None:
    assert SetCookieFormatter(settings, path).format(value, NOW, tls, None) == expected


@pytest.mark.parametrize(
    ("settings", "tls", "attributes"),
    [case[1:] for case in ATTRIBUTE_CASES],
    ids=[case[0] for case in ATTRIBUTE_CASES],
)
def test_set_cookie_attributes(settings: CookieSettings, tls: bool, attributes: str) -> None:
    text = SetCookieFormatter(settings, "/").format("K|B", NOW, tls, None)
    assert text == "INGRESSCOOKIE=K|B" + attributes


OLD_CHROME = "Mozilla/5.0 Chrome/66.0.3359.139 Safari/537.36"
NEW_CHROME = "Mozilla/5.0 Chrome/120.0.0.0 Safari/537.36"


@pytest.mark.parametrize(
    ("samesite", "conditional", "user_agent", "expected_suffix"),
    [
        ("None", True, OLD_CHROME, "; HttpOnly"),  # dropped for an incompatible UA
        ("None", True, NEW_CHROME, "; HttpOnly; SameSite=None"),
        ("None", True, None, "; HttpOnly; SameSite=None"),  # no UA counts as compatible
        ("None", False, OLD_CHROME, "; HttpOnly; SameSite=None"),  # rule off: always sent
        ("Lax", True, OLD_CHROME, "; HttpOnly; SameSite=Lax"),  # only None is ever dropped
        ("Strict", True, OLD_CHROME, "; HttpOnly; SameSite=Strict"),
    ],
)
def test_conditional_samesite_none(
    samesite: str, conditional: bool, user_agent: str | None, expected_suffix: str
) -> None:
    settings = CookieSettings(samesite=samesite, conditional_samesite_none=conditional)
    text = SetCookieFormatter(settings, "/").format("K|B", NOW, False, user_agent)
    assert text == "INGRESSCOOKIE=K|B; Path=/" + expected_suffix


def test_formatter_uses_its_path_argument_not_the_settings_path() -> None:
    """The caller passes the route's effective path (session-cookie-path, else the Ingress path)."""
    formatter = SetCookieFormatter(CookieSettings(path="/ignored"), "/effective")
    text = formatter.format("K|B", NOW, False, None)
    assert text == "INGRESSCOOKIE=K|B; Path=/effective; HttpOnly"


# --- new_balanced_key (docs/ingress-nginx-compat.md, "New keys") -------------------------------


@pytest.mark.parametrize(
    ("now", "attempt", "pid", "r", "expected"),
    [
        (1700000000.123, 1, 4242, 698852, "1700000001.123.4242.698852"),  # first layout example
        (1700000000.12, 1, 4242, 1, "1700000001.12.4242.1"),  # ms = 120: trailing zero dropped
        (1700000000.0, 1, 4242, 999999, "1700000001.4242.999999"),  # ms = 0: no decimal point
        (1700000000.5, 20, 7, 42, "1700000020.5.7.42"),
        (1700000000.001, 3, 1, 10, "1700000003.001.1.10"),
        (1700000000.999, 1, 1, 10, "1700000001.999.1.10"),
        (99.25, 1, 1, 10, "100.25.1.10"),
    ],
)
def test_new_balanced_key_format(now: float, attempt: int, pid: int, r: int, expected: str) -> None:
    assert new_balanced_key(now, attempt, pid, FixedRandom(r)) == expected


def test_new_balanced_key_draws_what_randint_draws() -> None:
    keys, draws = random.Random(5), random.Random(5)
    for _ in range(2_000):
        drawn = new_balanced_key(NOW, 1, 4242, keys).rsplit(".", 1)[1]
        assert drawn == str(draws.randint(1, 999999))


def test_new_balanced_key_random_part() -> None:
    rng = random.Random(1)
    forbidden = set('|;, \t"')
    parts = [new_balanced_key(NOW, 1, 4242, rng).split(".") for _ in range(2_000)]
    assert all(len(p) == 4 and p[:3] == ["1700000001", "123", "4242"] for p in parts)
    assert all(1 <= int(p[3]) <= 999999 and p[3] == str(int(p[3])) for p in parts)
    assert all(not forbidden & set(".".join(p)) for p in parts)
    assert len({p[3] for p in parts}) > 1_990  # really random, not a constant
    assert set(string.digits) >= set("".join(p[3] for p in parts))
