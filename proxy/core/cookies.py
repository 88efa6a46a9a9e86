"""Affinity cookie text: reading the Cookie header, splitting the value, writing Set-Cookie.

Byte-for-byte ingress-nginx (docs/ingress-nginx-compat.md, "Reading the cookie"), which means
lua-resty-cookie's parser rather than RFC 6265 or `http.cookies`: raw values, the last occurrence
wins, and some odd inputs parse oddly on purpose.

Strings here are header text decoded as Latin-1 (one character per byte), the data plane's
convention, so what is hashed is exactly the bytes the client sent.
"""

from __future__ import annotations

import hashlib
import random
import re
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

# --- reading -----------------------------------------------------------------------------------

# One lua-resty-cookie token (docs/ingress-nginx-compat.md, "Cookie header parsing"): skip
# spaces/tabs; the name runs to the first `=` (it may hold
# `;` and spaces); the value runs to the first `;`, space or tab, and that one character is
# consumed. Possessive quantifiers make the tokenisation unique, so no backtracking inside a token.
_TOKEN: Final = r"[ \t]*+[^=]*+=[^; \t]*+[; \t]?+"


@lru_cache(maxsize=256)
def _last_cookie_pattern(name: str) -> re.Pattern[str]:
    """A matcher for the value of the *last* token named `name`.

    `(?:TOKEN)*` first swallows every token, then gives them back one at a time until the next
    token is `name=...`: the first success is the last occurrence, as in a Lua table where later
    assignments overwrite earlier ones. All of it runs inside the regex engine (one C call).
    """
    return re.compile(f"(?:{_TOKEN})*[ \\t]*+{re.escape(name)}=([^; \\t]*+)")


def parse_cookie(header: str, name: str) -> str | None:
    """The raw value of cookie `name` in a whole Cookie header, or None when it is absent.

    Several Cookie lines must be joined with "; " first, as nginx does.
    """
    # A name holding `=` or starting with a blank can never be a token name; a name absent from
    # the header cannot match either. The substring test also makes the common miss cheap.
    prefix = name + "="
    if "=" in name or name[:1] in (" ", "\t") or prefix not in header:
        return None
    if "\t" not in header and header.count(";") == header.count(" ") == header.count("; "):
        # What browsers send: every `;` followed by a space and every space after a `;`, so the
        # tokens are exactly the "; "-separated pieces (the regex costs several times more).
        value = None
        pieces = header.split("; ")
        last = len(pieces) - 1
        for index, piece in enumerate(pieces):
            if "=" not in piece:
                if index < last:
                    break  # a piece without `=` runs into the next one's name: the general rules
                return value  # a trailing fragment without `=` is ignored
            if piece.startswith(prefix):
                value = piece[len(prefix) :]
        else:
            return value
    match = _last_cookie_pattern(name).match(header)
    return match.group(1) if match else None


def split_value(value: str) -> tuple[str, str | None] | None:
    """(upstream key, backend key or None) of a cookie value; None if it holds no key
    (docs/ingress-nginx-compat.md, "Splitting the value").

    Splits on `|` and drops empty pieces, as ingress-nginx's `split_string` does with `[^|]+`.
    """
    pieces = [piece for piece in value.split("|") if piece]
    if not pieces:
        return None
    return pieces[0], pieces[1] if len(pieces) > 1 else None


def upstream_key(value: str) -> str | None:
    """The first piece of `split_value(value)` without building the rest: the only part that
    picks the endpoint (docs/ingress-nginx-compat.md, "The backend key": never checked), so
    this is the hot-path form."""
    bar = value.find("|")
    if bar < 0:
        return value or None
    if bar > 0:
        return value[:bar]
    split = split_value(value)  # a leading `|`: rare, take the general path
    return split[0] if split else None


def backend_key(backend_name: str) -> str:
    """md5hex(md5hex(name) + name): the cookie's second part, this backend's fingerprint
    (docs/ingress-nginx-compat.md, "The backend key")."""
    inner = hashlib.md5(backend_name.encode()).hexdigest()
    return hashlib.md5((inner + backend_name).encode()).hexdigest()


# --- writing -----------------------------------------------------------------------------------

# struct_time.tm_wday counts from Monday; nginx's table from Sunday, the names are what matter.
_WEEKDAYS: Final[tuple[str, ...]] = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS: Final[tuple[str, ...]] = (
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
)  # fmt: skip


def cookie_date(epoch_seconds: int) -> str:
    """nginx's `ngx_http_cookie_time`: `Wdy, DD-Mon-YY HH:MM:SS GMT`, dashes, and the year in two
    digits up to 2037 but in full from 2038 (docs/ingress-nginx-compat.md, "Expires date")."""
    t = time.gmtime(epoch_seconds)  # a pure conversion of the given instant, no clock read
    year = t.tm_year if t.tm_year > 2037 else t.tm_year % 100
    return (
        f"{_WEEKDAYS[t.tm_wday]}, {t.tm_mday:02d}-{_MONTHS[t.tm_mon - 1]}-{year:02d} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT"
    )


def samesite_none_incompatible(user_agent: str | None) -> bool:
    """Whether this UA mishandles `SameSite=None` (ingress-nginx's `same_site.lua`;
    docs/ingress-nginx-compat.md, "SameSite and old user agents").

    Plain case-sensitive substring tests, copied as they are: `Chrome/4` also matches
    `HeadlessChrome/4x` and would match Chrome 400. No User-Agent counts as compatible.
    """
    if user_agent is None:
        return False
    return (
        "Chrome/4" in user_agent
        or "Chrome/5" in user_agent
        or "Chrome/6" in user_agent
        or "CPU iPhone OS 12" in user_agent
        or "iPad; CPU OS 12" in user_agent
        or (
            "Macintosh" in user_agent
            and "Intel Mac OS X 10_14" in user_agent
            and "Safari" in user_agent
            and "Chrome" not in user_agent
        )
    )


# lua-resty-cookie drops any other
_SAMESITE_SPELLINGS: Final = frozenset({"Strict", "Lax", "None"})


@dataclass(frozen=True, slots=True)
class CookieSettings:
    """The `session-cookie-*` annotations, already validated."""

    name: str = "INGRESSCOOKIE"
    path: str | None = None  # None: the matched Ingress path
    domain: str | None = None
    samesite: str | None = None  # emitted only when exactly Strict, Lax or None
    conditional_samesite_none: bool = False
    secure: bool = False
    max_age: int | None = None
    expires: int | None = None  # seconds from now
    change_on_failure: bool = False


class SetCookieFormatter:
    """Builds the affinity Set-Cookie value for one route; everything constant is joined once.

    Layout (docs/ingress-nginx-compat.md, "Set-Cookie layout"):
    `<name>=<value>[; Expires=][; Max-Age=][; Domain=]; Path=[; Secure]; HttpOnly[; SameSite=]`.
    Only Expires (the clock), Secure (the connection's TLS) and SameSite (the UA,
    under the conditional rule) vary per request, so the tails are precomputed for each case.
    """

    __slots__ = ("_conditional", "_expires", "_prefix", "_tails")

    def __init__(self, settings: CookieSettings, path: str) -> None:
        """`path` is the route's effective cookie path: session-cookie-path, else the Ingress
        path; `settings.path` is not consulted again here."""
        self._prefix = settings.name + "="
        self._expires = settings.expires
        middle = ""
        if settings.max_age is not None:
            middle += f"; Max-Age={settings.max_age}"
        if settings.domain:
            middle += f"; Domain={settings.domain}"
        middle += f"; Path={path}"
        samesite = settings.samesite if settings.samesite in _SAMESITE_SPELLINGS else None
        same_site_part = f"; SameSite={samesite}" if samesite else ""
        # The conditional rule only ever removes exactly `None`
        # (docs/ingress-nginx-compat.md, "Attributes").
        self._conditional = settings.conditional_samesite_none and samesite == "None"
        # Indexed by [secure][keep SameSite]. `secure` is the annotation OR the request's own TLS;
        # an annotation of false cannot switch Secure off on HTTPS (ingress-nginx sends it unset).
        self._tails = tuple(
            tuple(
                middle
                + ("; Secure" if settings.secure or tls else "")
                + "; HttpOnly"
                + (same_site_part if keep_samesite else "")
                for keep_samesite in (False, True)
            )
            for tls in (False, True)
        )

    def format(self, value: str, now: float, tls: bool, user_agent: str | None) -> str:
        """The Set-Cookie header value for cookie `value` (`<upstream key>|<backend key>`)."""
        keep_samesite = not (self._conditional and samesite_none_incompatible(user_agent))
        tail = self._tails[tls][keep_samesite]
        if self._expires is None:
            return self._prefix + value + tail
        # ingress-nginx: ngx.time() (whole seconds) + session-cookie-expires.
        expires = cookie_date(int(now) + self._expires)
        return f"{self._prefix}{value}; Expires={expires}{tail}"


def new_balanced_key(now: float, attempt: int, pid: int, rng: random.Random) -> str:
    """A fresh balanced-mode upstream key, `<T>.<PID>.<R>` as ingress-nginx makes them
    (docs/ingress-nginx-compat.md, "New keys").

    T = now + attempt printed like LuaJIT's `tostring` (`%.14g`: 14 significant digits, trailing
    zeros and point dropped), R uniform in 1..999999. Only the format is advice; any key works,
    but this one stays readable if a user ever moves back to ingress-nginx.
    """
    return f"{now + attempt:.14g}.{pid}.{_one_to_999999(rng)}"


def _one_to_999999(rng: random.Random) -> int:
    """`rng.randint(1, 999999)`, the same number from the same state, without the three calls of
    interpreted random.py it takes (its `_randbelow`: 20 random bits until one is below 999999)."""
    draw = rng.getrandbits(20)
    while draw >= 999999:
        draw = rng.getrandbits(20)
    return draw + 1
