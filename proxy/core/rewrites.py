"""What an Ingress's rewrite and redirect annotations do to a request, as pure values
(docs/behaviour.md, "Rewrites and redirects"). They ride on a route's `Filters` beside the
Gateway API ones, so the data plane looks at them only for the routes that have them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_CAPTURE = re.compile(r"\$([0-9])")  # nginx's $0..$9 in a rewrite replacement


@dataclass(frozen=True, slots=True)
class RegexRewrite:
    """rewrite-target: nginx's `rewrite "(?i)<path>" <target> break;`. The Ingress path is
    searched for anywhere in the request's path; where found, the whole path becomes `target`
    with `$1`..`$9` (`$0`: the match) filled from the groups; elsewhere it stays as it was."""

    pattern: re.Pattern[str]
    target: str

    def apply(self, path: str) -> str:
        found = self.pattern.search(path)
        if found is None:
            return path
        groups = (found.group(0), *found.groups())

        def group(number: re.Match[str]) -> str:
            index = int(number.group(1))
            return (groups[index] or "") if index < len(groups) else ""

        return _CAPTURE.sub(group, self.target)


@dataclass(frozen=True, slots=True)
class FixedRedirect:
    """permanent-redirect and temporal-redirect (`url` as written), or app-root (`url` a path
    on the request's own scheme and Host, as nginx's `$scheme://$http_host<path>`). Either way
    without the request's query, as nginx's `return`. With `to_host`, from-to-www-redirect:
    `url` is the other host, and the target goes along without its last "/", the port always
    named (ingress-nginx's ngx_srv_redirect.lua)."""

    url: str
    status: int
    on_own_host: bool = False
    to_host: bool = False

    def location(self, scheme: str, host: str, port: str, target: str) -> str:
        if self.to_host:
            return f"{scheme}://{self.url}:{port}{target.removesuffix('/')}"
        return f"{scheme}://{host}{self.url}" if self.on_own_host else self.url
