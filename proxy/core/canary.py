"""Which side of a canary serves a request: ingress-nginx's alternative-backend choice, as pure
code (docs/ingress-nginx-compat.md, "Canaries").

A canary Ingress adds its backend as the *alternative* of a main backend. Per request, in this
order: a cookie whose backend key is the main backend's keeps the request there; one whose key
is the canary's sends it to the canary; then the header, the cookie and the weight decide, as
`CanaryPolicy.wants` describes. Randomness comes from the caller.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from random import Random

from proxy.core.affinity import Cluster
from proxy.core.cookies import parse_cookie, split_value
from proxy.core.headers import Request

ALWAYS = "always"
NEVER = "never"
WEIGHT_TOTAL = 100  # canary-weight-total's default, and its floor in ingress-nginx's balancer


@dataclass(frozen=True, slots=True)
class CanaryPolicy:
    """ingress-nginx's traffic shaping policy of a canary backend (its canary-* annotations)."""

    header: str = ""  # canary-by-header, as nginx names the variable: lower case, `-` as `_`
    header_value: str = ""  # canary-by-header-value: this exact value sends to the canary
    header_pattern: re.Pattern[str] | None = None  # canary-by-header-pattern, when no value
    # a pattern that does not compile: with the header present, the main backend, no matter
    # the cookie or the weight (nginx's regex error ends the choice there)
    pattern_error: bool = False
    cookie: str = ""  # canary-by-cookie
    weight: int = 0  # canary-weight, out of `weight_total`
    weight_total: int = WEIGHT_TOTAL

    def wants(self, request: Request, rng: Random) -> bool:
        """Whether a request no cookie ties to either side goes to the canary."""
        if self.header:
            value = header_variable(request, self.header)
            if value is not None:
                if self.header_value:
                    if value == self.header_value:
                        return True
                elif self.pattern_error:
                    return False
                elif self.header_pattern is not None:
                    if self.header_pattern.search(value):
                        return True
                elif value == ALWAYS:
                    return True
                elif value == NEVER:
                    return False
        if self.cookie and request.cookie is not None:
            value = first_cookie(request.cookie, self.cookie)
            if value == ALWAYS:
                return True
            if value == NEVER:
                return False
        # ingress-nginx draws 1..total and takes the canary at or below the weight; a total
        # below 100 is not used there, so it is not here either.
        return rng.randint(1, max(self.weight_total, WEIGHT_TOTAL)) <= self.weight


def takes_canary(
    main: Cluster, canary: Cluster, policy: CanaryPolicy, request: Request, rng: Random
) -> bool:
    """Whether `request`, routed to `main`'s location, goes to its canary instead."""
    cookie = request.cookie
    if cookie is not None:
        if _affinitized(main, cookie):
            return False
        if _affinitized(canary, cookie):
            return True
    return policy.wants(request, rng)


def _affinitized(cluster: Cluster, cookie_header: str) -> bool:
    """ingress-nginx's `is_affinitized`: the cluster's affinity cookie carries its backend key.
    Whether the key still names an endpoint does not matter."""
    affinity = cluster.affinity
    if affinity is None:
        return False
    value = parse_cookie(cookie_header, affinity.cookie.name)
    if not value:
        return False
    pieces = split_value(value)
    return pieces is not None and pieces[1] == cluster.balancer.backend_key


def variable_name(header: str) -> str:
    """How nginx names a request header's `$http_` variable: lower case, `-` as `_`."""
    return header.lower().replace("-", "_")


def header_variable(request: Request, name: str) -> str | None:
    """nginx's `$http_<name>` (`name` as `variable_name` gives it): the request's header lines
    of that name, joined by `, `; None when it has none."""
    values = [
        value.decode("latin-1")
        for header, value in request.forward
        if variable_name(header.decode("latin-1")) == name
    ]
    return ", ".join(values) if values else None


def first_cookie(header: str, name: str) -> str | None:
    """nginx's `$cookie_<name>` (`name` in lower case): the value of the first cookie of that
    name in any case, None without one."""
    for piece in header.split(";"):
        key, equals, value = piece.strip().partition("=")
        if equals and key.lower() == name:
            return value
    return None
