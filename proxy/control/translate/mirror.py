"""mirror-target, mirror-host and mirror-request-body, validated as ingress-nginx's mirror
parser does (internal/ingress/annotations/mirror/main.go), into the route's `Mirror`
(docs/behaviour.md, "Mirroring"). Pure.

ingress-nginx mirrors only when the target and a Host for it are known: an invalid target, or
one whose host it cannot read without mirror-host, gives no mirror location. Here either is a
warning and no mirror (ingress-nginx's leftover `mirror` directive would send the copy to the
Ingress's own server instead; docs/ingress-nginx-compat.md, "Mirroring").
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from proxy.control.translate.external_auth import PREFIX, Annotations, http_url
from proxy.core.external_auth import Template, parse_template
from proxy.core.mirror import Mirror

ANNOTATIONS = ("mirror-target", "mirror-host", "mirror-request-body")
# ingress-nginx's ValidateServerName, for the target and the host: IsValidRegex's characters
_SERVER_NAME = re.compile(r"[-._~a-zA-Z0-9/:^$\[\](){}*+?|&=\\]*")


def mirror(reader: Annotations) -> Mirror | None:
    """The route's mirror; None without a usable mirror-target."""
    target = reader.value("mirror-target", _target)
    host = reader.value("mirror-host", _host)
    body = reader.text("mirror-request-body")
    if body is not None and body.replace(" ", "") not in {"on", "off"}:
        reader.warnings.append(f"{PREFIX}mirror-request-body: {body!r} is not on or off; on")
    if target is None:
        for name in ("mirror-host", "mirror-request-body"):
            reader.ignored_without(name, "mirror-target")
        return None
    if host is None:
        # Go's url.Hostname() of the target up to its first `$`: the host without its port
        host = parse_template(urlsplit(target.parts[0]).hostname or "")
    return Mirror(target, host, body is None or body.replace(" ", "") != "off")


def _target(text: str) -> Template:
    _server_name(text)
    # (ingress-nginx reads the host from the target up to its first variable)
    http_url(text, urlsplit(text.split("$", 1)[0]), "mirror-target")
    return parse_template(text)


def _host(text: str) -> Template:
    _server_name(text)
    return parse_template(text)


def _server_name(text: str) -> None:
    if not _SERVER_NAME.fullmatch(text):
        raise ValueError(f"{text!r} holds characters ingress-nginx refuses in a server name")
