"""The text `sticky-proxy routes` prints: the resolved routing table, then every warning.

One table per host (named hosts first, then the rules without host, then the default backend),
then each cluster's affinity and endpoints, then the warnings. Plain text in a stable order, so
two runs over the same objects print the same thing and diff cleanly.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from proxy.control.translate.annotations import SAMESITE_SPELLINGS
from proxy.core.affinity import Cluster
from proxy.core.balancing import Balancing, balancing_text
from proxy.core.model import Affinity, ObjectStatus, UpstreamPolicy, UpstreamTls
from proxy.core.routing import Route, Snapshot

_DEFAULTS = UpstreamPolicy()  # the built-in defaults: a route shows what differs from them
_UNITS = ((1024**3, "g"), (1024**2, "m"), (1024, "k"))


def describe(snapshot: Snapshot) -> str:
    sections = [_host_section(host, routes) for host, routes in _by_host(snapshot.routes)]
    if snapshot.default_route is not None:
        sections.append(_table("default backend (when no route matches)", [snapshot.default_route]))
    if not sections:
        sections.append("no routes")
    sections.extend(_cluster_section(cluster) for cluster in snapshot.clusters)
    if snapshot.certificates:
        lines = ["TLS certificates (chosen by SNI)"]
        lines.extend(
            f"  {', '.join(c.hosts) or 'default'}: {c.source}" for c in snapshot.certificates
        )
        sections.append("\n".join(lines))
    if snapshot.statuses:
        sections.append(_status_section(snapshot.statuses))
    sections.extend(
        "\n".join([f"annotations of {ingress}", *_aligned(used)])
        for ingress, used in snapshot.annotations
    )
    if snapshot.warnings:
        lines = [f"warnings ({len(snapshot.warnings)})"]
        lines.extend(f"  {warning}" for warning in snapshot.warnings)
        sections.append("\n".join(lines))
    return "\n\n".join(sections)


def _by_host(routes: Iterable[Route]) -> list[tuple[str | None, list[Route]]]:
    hosts: dict[str | None, list[Route]] = {}
    for route in routes:
        hosts.setdefault(route.host, []).append(route)
    return sorted(hosts.items(), key=lambda item: (item[0] is None, item[0] or ""))


def _host_section(host: str | None, routes: list[Route]) -> str:
    title = f"host {host}" if host is not None else "every other host (rules without host)"
    return _table(title, routes)


def _table(title: str, routes: Sequence[Route]) -> str:
    rows = [("PATH", "TYPE", "CLUSTER", "AFFINITY", "INGRESS")]
    notes: dict[int, str] = {}
    for route in routes:
        rows.append(
            (
                route.path,
                route.path_type.value,
                route.cluster.name,
                _route_affinity(route),
                f"{route.namespace}/{route.ingress}" if route.ingress else "-",
            )
        )
        upstream = _upstream_differences(route.upstream)
        note = "; ".join(
            part
            for part in (
                _conditions(route),
                _split(route),
                _canary(route),
                _rewrites(route),
                "its backend reference does not resolve: answered 500"
                if route.invalid_backend
                else "",
                "plain HTTP redirects to https (308)" if route.ssl_redirect else "",
                _access(route),
                _limits(route),
                _send_rate(route),
                _mirror(route),
                _basic_auth(route),
                _client_auth(route),
                f"proxy: {upstream}" if upstream else "",
                _cors(route),
                _external_auth(route),
                _errors(route),
                _response_headers(route),
                _response_edits(route),
                "satisfy any" if route.satisfy_any else "",
            )
            if part
        )
        if note:
            notes[len(rows) - 1] = note
    lines = [title]
    for index, line in enumerate(_aligned(rows)):
        lines.append(line)
        if index in notes:
            lines.append(f"    {notes[index]}")
    return "\n".join(lines)


def _access(route: Route) -> str:
    """The *-source-range lists in the order they are checked
    (docs/behaviour.md, "Access by client address")."""
    access = route.access
    if access is None:
        return ""
    parts = [f"deny {', '.join(map(str, access.deny))}"] if access.deny else []
    if access.allow:
        parts.append(f"allow {', '.join(map(str, access.allow))}, deny the rest")
    return "clients: " + "; ".join(parts) + " (403)"


def _send_rate(route: Route) -> str:
    """limit-rate and limit-rate-after (docs/behaviour.md, "Response rate")."""
    rate = route.send_rate
    if rate is None:
        return ""
    after = f" after {rate.after // 1024} KB" if rate.after else ""
    return f"answers at {rate.rate // 1024} KB/s{after}"


def _mirror(route: Route) -> str:
    """mirror-target and the like (docs/behaviour.md, "Mirroring")."""
    mirror = route.mirror
    if mirror is None:
        return ""
    body = "" if mirror.body else ", without the body"
    return f"copies each request to {mirror.target.text} (Host {mirror.host.text}{body})"


def _limits(route: Route) -> str:
    """limit-rps, limit-rpm, limit-connections and their allowlist
    (docs/behaviour.md, "Rate and connection limits")."""
    limits = route.limits
    if limits is None:
        return ""
    parts = [f"{rate.text} burst {rate.burst // 1000}" for rate in limits.requests]
    if limits.connections:
        parts.append(f"{limits.connections} at once")
    exempt = f" (not {', '.join(map(str, limits.exempt))})" if limits.exempt else ""
    return f"limits per client of {limits.zone}: {', '.join(parts)}{exempt}"


def _basic_auth(route: Route) -> str:
    """Whose users may pass (docs/behaviour.md, "Basic authentication")."""
    auth = route.basic_auth
    if auth is None:
        return ""
    users = len(auth.users)
    return f"basic auth: {users} user{'' if users == 1 else 's'} of {auth.source} (401)"


def _client_auth(route: Route) -> str:
    """Which clients' certificates the host takes
    (docs/behaviour.md, "Client certificate authentication")."""
    auth = route.client_auth
    if auth is None:
        return ""
    if auth.refused is not None:
        return f"client certificates: {auth.refused} (403)"
    extras = [f"verify {auth.verify}"]
    if auth.match_cn is not None:
        extras.append(f"subject matching {auth.match_cn.pattern!r}")
    if auth.pass_certificate:
        extras.append("passed to the pod")
    return f"client certificates of {auth.source}: {', '.join(extras)}"


def _conditions(route: Route) -> str:
    conditions = route.conditions
    if conditions is None:
        return ""
    parts = [f"method {conditions.method}"] if conditions.method else []
    for kind, matches in (("header", conditions.headers), ("query", conditions.query)):
        parts.extend(f"{kind} {m.name} {'~' if m.regex else '='} {m.value!r}" for m in matches)
    return "only " + ", ".join(parts)


def _rewrites(route: Route) -> str:
    """An Ingress's redirect or rewrite (docs/behaviour.md, "Rewrites and redirects")."""
    filters = route.filters
    if filters is None:
        return ""
    redirect = filters.fixed_redirect
    if redirect is not None:
        to = f"{redirect.url}<target>" if redirect.to_host else redirect.url
        return f"redirects {redirect.status} to {to}"
    parts = []
    if filters.path_regex is not None:
        parts.append(f"rewrites the path to {filters.path_regex.target}")
    if filters.request_headers is not None:
        parts.extend(f"sends {name}: {value}" for name, value in filters.request_headers.set)
    if filters.rewrite is not None and filters.rewrite.hostname is not None:
        parts.append(f"sends Host: {filters.rewrite.hostname}")
    return ", ".join(parts)


def _canary(route: Route) -> str:
    """How requests reach the location's canary (docs/ingress-nginx-compat.md, "Canaries")."""
    canary, policy = route.canary, route.canary_policy
    if canary is None or policy is None:
        return ""
    ways = []
    if policy.header:
        if policy.header_value:
            ways.append(f"header {policy.header} = {policy.header_value!r}")
        elif policy.header_pattern is not None:
            ways.append(f"header {policy.header} ~ {policy.header_pattern.pattern!r}")
        else:
            ways.append(f"header {policy.header} always/never")
    if policy.cookie:
        ways.append(f"cookie {policy.cookie} always/never")
    total = max(policy.weight_total, 100)
    ways.append(f"weight {policy.weight} of {total}")
    sessions = "sticky" if canary.cluster.affinity is not None else "no cookie"
    return (
        f"canary {canary.cluster.name} (Ingress {canary.namespace}/{canary.ingress},"
        f" {sessions}): {', '.join(ways)}"
    )


def _cors(route: Route) -> str:
    """Which origins get CORS headers (docs/behaviour.md, "CORS")."""
    cors = route.cors
    if cors is None:
        return ""
    if cors.origins is None:
        return "CORS: every origin"
    return f"CORS: {', '.join(cors.origins) or 'no origin'}"


def _external_auth(route: Route) -> str:
    """Where requests are asked about (docs/behaviour.md, "External authentication")."""
    auth = route.external_auth
    if auth is None:
        return ""
    signin = f", 401 redirects to {auth.signin.text}" if auth.signin is not None else ""
    sets = f", sets {', '.join(name for name, _ in auth.set_headers)}" if auth.set_headers else ""
    return f"auth: {auth.method or 'GET'} {auth.url.text}{signin}{sets}"


def _response_headers(route: Route) -> str:
    """custom-headers (docs/behaviour.md, "Custom response headers")."""
    headers = route.response_headers
    if headers is None:
        return ""
    names = [line.split(b":", 1)[0].decode() for line in headers.lines.splitlines()]
    return f"sets headers {', '.join(names)}"


def _response_edits(route: Route) -> str:
    """proxy-redirect-*, proxy-cookie-* (docs/behaviour.md, "Location and cookie rewrites")."""
    edits = route.response_edits
    if edits is None:
        return ""
    rules = (("Location", edits.redirect), ("cookie Domain", edits.cookie_domain),
             ("cookie Path", edits.cookie_path))  # fmt: skip
    return "; ".join(f"rewrites {what} {rule}" for what, rule in rules if rule is not None)


def _errors(route: Route) -> str:
    """custom-http-errors and default-backend (docs/behaviour.md, "Custom error pages")."""
    pages = route.errors
    if pages is None:
        return ""
    backend = pages.backend.cluster.name if pages.backend is not None else "the built-in 404"
    parts = []
    if pages.stands_in:
        parts.append("its Service has no ready endpoint: served by the default backend")
    if pages.codes:
        codes = ",".join(map(str, sorted(pages.codes)))
        own = "" if pages.intercepted else " (the proxy's own answers only)"
        parts.append(f"errors {codes}{own} answered by {backend}")
    return "; ".join(parts)


def _split(route: Route) -> str:
    if len(route.split) < 2:  # one backend is no split
        return ""
    shares = []
    previous = 0
    for bound, part in route.split:
        target = "500" if part.invalid_backend else part.cluster.name
        shares.append(f"{bound - previous} to {target}")
        previous = bound
    return "by weight: " + ", ".join(shares)


def _status_section(statuses: Sequence[ObjectStatus]) -> str:
    lines = ["Gateway API status"]
    for status in statuses:
        where = f"{status.namespace}/{status.name}" if status.namespace else status.name
        parent = f" {status.parent}" if status.parent else ""
        conditions = ", ".join(
            f"{c.type}={c.status}({c.reason})" + (f": {c.message}" if c.message else "")
            for c in status.conditions
        )
        attached = (
            f", {status.attached_routes} routes attached"
            if status.attached_routes is not None
            else ""
        )
        lines.append(f"  {status.kind} {where}{parent}: {conditions}{attached}")
    return "\n".join(lines)


def _aligned(rows: Sequence[Sequence[str]]) -> list[str]:
    """`rows` as indented lines with their columns lined up."""
    widths = (
        [max(len(row[column]) for row in rows) for column in range(len(rows[0]))] if rows else []
    )
    return [
        "  "
        + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def _route_affinity(route: Route) -> str:
    session = route.session
    if session is not None:  # Gateway API sessionPersistence
        lifetime = ""
        if session.absolute_timeout:
            how = "Max-Age" if session.permanent else "enforced"
            lifetime = f", {session.absolute_timeout}s {how}"
        return f"session {session.kind.value.lower()} {session.name}{lifetime}"
    affinity = route.cluster.affinity
    if affinity is None:
        return "none"
    cookie = affinity.cookie.name
    if route.sets_cookie:
        return f"{affinity.mode.value}, sets {cookie} (Path={route.cookie_path})"
    # The cookie still picks the endpoint here, but only affinity locations set it
    # (docs/ingress-nginx-compat.md, "Affinity locations").
    return f"{affinity.mode.value}, reads {cookie}, never sets it"


def _cluster_section(cluster: Cluster) -> str:
    lines = [f"cluster {cluster.name}: {_cluster_affinity(cluster.affinity, cluster.balancing)}"]
    if not cluster.endpoints:
        lines.append("  no endpoints: requests answer 503")
    rows = [
        (e.node, "draining" if e.draining else "ready", e.pod or "-") for e in cluster.endpoints
    ]
    lines.extend(_aligned(rows))
    return "\n".join(lines)


def _cluster_affinity(affinity: Affinity | None, balancing: Balancing | None) -> str:
    if affinity is None:
        return f"no affinity, {balancing_text(balancing)}"
    cookie = affinity.cookie
    attributes = []
    if cookie.expires is not None:
        attributes.append(f"Expires=now+{cookie.expires}s")
    if cookie.max_age is not None:
        attributes.append(f"Max-Age={cookie.max_age}")
    if cookie.domain:
        attributes.append(f"Domain={cookie.domain}")
    if cookie.path:
        attributes.append(f"Path={cookie.path}")
    attributes.append("Secure" if cookie.secure else "Secure on TLS")
    attributes.append("HttpOnly")
    if cookie.samesite in SAMESITE_SPELLINGS:
        conditional = " (not for UAs that mishandle it)" if cookie.conditional_samesite_none else ""
        attributes.append(f"SameSite={cookie.samesite}{conditional}")
    if cookie.change_on_failure:
        attributes.append("change-on-failure")
    return f"affinity {affinity.mode.value}, cookie {cookie.name}: {'; '.join(attributes)}"


def _upstream_differences(policy: UpstreamPolicy) -> str:
    differences = []
    for name, value, default in (
        ("connect-timeout", policy.connect_timeout, _DEFAULTS.connect_timeout),
        ("read-timeout", policy.read_timeout, _DEFAULTS.read_timeout),
        ("send-timeout", policy.send_timeout, _DEFAULTS.send_timeout),
    ):
        if value != default:
            differences.append(f"{name} {value:g}s")
    if policy.body_size != _DEFAULTS.body_size:
        differences.append(f"body-size {_size(policy.body_size)}")
    if policy.next_upstream != _DEFAULTS.next_upstream:
        conditions = " ".join(sorted(policy.next_upstream)) or "off"
        differences.append(f"next-upstream {conditions}")
    if policy.next_upstream_tries != _DEFAULTS.next_upstream_tries:
        tries = policy.next_upstream_tries
        differences.append(f"next-upstream-tries {tries or 'unlimited'}")
    if policy.next_upstream_timeout != _DEFAULTS.next_upstream_timeout:
        differences.append(f"next-upstream-timeout {policy.next_upstream_timeout:g}s")
    if policy.eject_after_failures:
        differences.append(
            f"eject after {policy.eject_after_failures} failures for {policy.eject_seconds:g}s"
        )
    if policy.tls is not None:
        differences.append(_tls(policy.tls))
    return ", ".join(differences)


def _tls(tls: UpstreamTls) -> str:
    """backend-protocol HTTPS and what proxy-ssl-* made of it
    (docs/behaviour.md, "Upstream TLS")."""
    details = [f"verified for {tls.name}" if tls.verify else "unverified"]
    if tls.sni:
        details.append(f"SNI {tls.name}")
    if tls.chain is not None:
        details.append("client certificate")
    if tls.source:
        details.append(tls.source)
    return f"https ({', '.join(details)})"


def _size(size: int) -> str:
    if size == 0:
        return "unlimited"
    for unit, suffix in _UNITS:
        if size % unit == 0:
            return f"{size // unit}{suffix}"
    return str(size)
