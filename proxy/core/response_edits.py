"""What proxy-redirect-from/-to and proxy-cookie-domain/-path do to an upstream's answer: nginx's
proxy_redirect, proxy_cookie_domain and proxy_cookie_path with the values ingress-nginx writes
(docs/behaviour.md, "Location and cookie rewrites"). Pure: header values in, header values out.

Only the upstream's own headers are edited, as nginx does while it copies them: the affinity
cookie, the auth service's cookies and custom headers are added after, and never rewritten.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

Headers = list[tuple[bytes, bytes]]

_URL: Final = re.compile(rb"url=", re.IGNORECASE)  # where a Refresh header's URL starts


@dataclass(frozen=True, slots=True)
class Rewrite:
    """One nginx rewrite rule: `pattern` (text) replaced by `to`.

    A plain pattern is a prefix compared byte for byte (nginx's simple form is case-sensitive:
    ngx_rstrncmp); `regex` (written `~`, or `~*` for any case) is searched for anywhere and then
    the whole value becomes `to` (ingress-nginx allows no `$` in a value, so `to` holds no
    captures). With `domain`, proxy_cookie_domain's simple form: the whole value, without one
    leading dot (which stays), equal to `pattern` in any case.
    """

    pattern: bytes
    to: bytes
    regex: re.Pattern[bytes] | None = None
    domain: bool = False

    def __str__(self) -> str:
        mark = "~" if self.regex is not None else ""
        return f"{mark}{self.pattern.decode('latin-1')} to {self.to.decode('latin-1')}"

    def apply(self, value: bytes) -> bytes | None:
        """The rewritten value, or None when the rule does not match."""
        if self.regex is not None:
            return self.to if self.regex.search(value) is not None else None
        if self.domain:
            dot = value[:1] == b"."
            rest = value[1:] if dot else value
            return (b"." if dot else b"") + self.to if rest.lower() == self.pattern else None
        if value.startswith(self.pattern):
            return self.to + value[len(self.pattern) :]
        return None


def rewrite(source: str, to: str, domain: bool = False) -> Rewrite:
    """The rule nginx builds from a directive's two parameters; `re.error` for a regex that
    does not compile. proxy_cookie_domain drops a leading dot of both and its regexes ignore
    case; proxy_redirect and proxy_cookie_path take `~*` for that."""
    raw = source.encode("latin-1")
    target = to.encode("latin-1")
    if raw.startswith(b"~"):
        caseless = domain or raw.startswith(b"~*")
        text = raw[2:] if raw.startswith(b"~*") and not domain else raw[1:]
        flags = re.IGNORECASE if caseless else 0
        return Rewrite(text, target, regex=re.compile(text, flags))
    if domain:
        return Rewrite(raw.removeprefix(b".").lower(), target.removeprefix(b"."), domain=True)
    return Rewrite(raw, target)


@dataclass(frozen=True, slots=True)
class ResponseEdits:
    """A route's rewrites of the upstream's Location, Refresh and Set-Cookie headers."""

    redirect: Rewrite | None = None  # proxy_redirect (None: off)
    cookie_domain: Rewrite | None = None  # proxy_cookie_domain (None: off)
    cookie_path: Rewrite | None = None  # proxy_cookie_path (None: off)

    def applied(self, headers: Headers, origin: bytes) -> Headers:
        """`headers` with the rules applied; `origin` (`scheme://host`) goes before a rewritten
        Location that starts with "/", as nginx's absolute_redirect (port_in_redirect off)."""
        return [(name, self._edited(name.lower(), value, origin)) for name, value in headers]

    def _edited(self, name: bytes, value: bytes, origin: bytes) -> bytes:
        redirect = self.redirect
        if redirect is not None and name == b"location":
            new = redirect.apply(value)
            if new is None:
                return value
            return origin + new if new.startswith(b"/") else new
        if redirect is not None and name == b"refresh":
            found = _URL.search(value)  # (not made absolute: nginx leaves that to the client)
            new = None if found is None else redirect.apply(value[found.end() :])
            return value if new is None or found is None else value[: found.end()] + new
        if name == b"set-cookie" and (self.cookie_domain or self.cookie_path) is not None:
            return self.cookie(value)
        return value

    def cookie(self, value: bytes) -> bytes:
        """One Set-Cookie value with its Domain and Path attributes rewritten. As nginx: split
        at ";", spaces trimmed around each name and value; when a rule matched, joined again
        with "; " and "="; a value whose first part has no "=" is no cookie and stays as is."""
        parts = [_attribute(part) for part in value.split(b";")]
        if parts[0][1] is None:
            return value
        changed = False
        for index in range(1, len(parts)):
            key, attribute = parts[index]
            rule = None
            if attribute is None:
                continue
            if len(key) == 6 and key.lower() == b"domain":
                rule = self.cookie_domain
            elif len(key) == 4 and key.lower() == b"path":
                rule = self.cookie_path
            new = rule.apply(attribute) if rule is not None else None
            if new is not None:
                parts[index] = (key, new)
                changed = True
        if not changed:
            return value
        return b"; ".join(key if text is None else key + b"=" + text for key, text in parts)


def _attribute(part: bytes) -> tuple[bytes, bytes | None]:
    """A cookie's `name=value` or attribute: (name, value), value None without "="."""
    key, equals, text = part.partition(b"=")
    return key.strip(b" "), (text.strip(b" ") if equals else None)
