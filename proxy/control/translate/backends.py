"""Ingress paths and the backends they share: each path with its final path type (use-regex),
then one plan per backend with the affinity settings merged across every Ingress that uses it,
the way ingress-nginx merges them (docs/ingress-nginx-compat.md, "Backend names")."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from proxy.control.translate.annotations import IngressSettings
from proxy.control.translate.ingresses import Backend, Ingress
from proxy.core.balancing import Balancing
from proxy.core.model import Affinity, AffinityMode, PathType

# Characters that make a path a regex to nginx; `.` is left out, it is common in plain paths.
_REGEX_CHARS = re.compile(r"[\\^$|?*+()\[\]{}]")


@dataclass(frozen=True, slots=True)
class PathEntry:
    """One Ingress path with its final path type."""

    ingress: Ingress
    host: str | None
    path: str
    path_type: PathType
    backend: Backend


def path_entries(
    ingresses: list[Ingress], settings: Mapping[str, IngressSettings], warnings: list[str]
) -> list[PathEntry]:
    # use-regex is per Ingress here (docs/behaviour.md, "Annotations"); in ingress-nginx it
    # turns every path of the host into a regex, so a path on such a host that looks like a
    # regex but is not one is flagged.
    # A rewritten path is a regex location too (docs/behaviour.md, "Rewrites and redirects").
    regex_hosts: dict[str | None, str] = {}
    for ingress in ingresses:
        own = settings[ingress.ref]
        if own.use_regex or any(_rewrites(own, path.path) for path in ingress.paths):
            for host in ingress.hosts:
                regex_hosts.setdefault(host, ingress.ref)
    entries = []
    for ingress in ingresses:
        use_regex = settings[ingress.ref].use_regex
        for path in ingress.paths:
            where = f"{ingress.ref}: path {path.path!r}"
            if path.backend is None:
                warnings.append(f"{where}: resource backends are not supported; path skipped")
                continue
            regex = use_regex or _rewrites(settings[ingress.ref], path.path)
            path_type = path_type_of(path.path_type, regex)
            if path_type is PathType.REGEX:
                try:
                    re.compile(path.path, re.IGNORECASE)
                except re.error as error:
                    warnings.append(f"{where} is not a valid regular expression ({error}); skipped")
                    continue
            elif path.host in regex_hosts and _REGEX_CHARS.search(path.path):
                warnings.append(
                    f"{where} is matched as {path_type.value} here, but ingress-nginx reads it as"
                    f" a regex: {regex_hosts[path.host]} sets use-regex on the same host"
                )
            entries.append(PathEntry(ingress, path.host, path.path, path_type, path.backend))
    return entries


def _rewrites(settings: IngressSettings, path: str) -> bool:
    return settings.rewrites is not None and settings.rewrites.rewrites(path)


def path_type_of(written: str, use_regex: bool) -> PathType:
    """How this proxy matches a path of the type written, with or without use-regex."""
    if written == "Exact":
        return PathType.EXACT
    if written == "ImplementationSpecific" and use_regex:
        return PathType.REGEX
    return PathType.PREFIX  # Prefix, and ImplementationSpecific as ingress-nginx reads it


@dataclass
class BackendPlan:
    """Everything the Ingresses say about one backend (cluster), in processing order."""

    backend: Backend
    users: list[Ingress] = field(default_factory=list)
    # host (None: rules without host) -> the paths of affinity Ingresses there
    # (docs/ingress-nginx-compat.md, "Affinity locations")
    locations: dict[str | None, set[str]] = field(default_factory=dict)
    affinity: Affinity | None = None
    service_upstream: bool = False  # dial the Service's cluster IP (docs/behaviour.md)
    balancing: Balancing | None = None  # see merge_backends


def merge_backends(
    ingresses: list[Ingress],
    entries: list[PathEntry],
    settings: Mapping[str, IngressSettings],
    warnings: list[str],
) -> dict[str, BackendPlan]:
    """One plan per backend name (docs/ingress-nginx-compat.md, "Backend names"): affinity is on
    if any Ingress path to it has `affinity: cookie`; the mode is the first one set; the cookie
    settings are the last affinity Ingress's; the affinity locations collect all of them. Hash-by
    and load-balance are those of the last Ingress naming the backend as its default backend, else
    of the first naming it in a path (docs/ingress-nginx-compat.md, "Load balancing")."""
    plans: dict[str, BackendPlan] = {}
    # ingress-nginx (createUpstreams) makes a backend's upstream, with those settings, at its
    # first mention in a path, but anew at each mention as an Ingress's default backend
    setter: dict[str, Ingress] = {}
    for ingress in ingresses:
        if ingress.default_backend is not None:
            backend = ingress.default_backend
            plans.setdefault(backend.cluster_name, BackendPlan(backend))
            setter[backend.cluster_name] = ingress
    for entry in entries:
        setter.setdefault(entry.backend.cluster_name, entry.ingress)
        plan = plans.setdefault(entry.backend.cluster_name, BackendPlan(entry.backend))
        if not plan.users or plan.users[-1] is not entry.ingress:  # entries come per Ingress
            plan.users.append(entry.ingress)
        if settings[entry.ingress.ref].affinity:
            plan.locations.setdefault(entry.host, set()).add(entry.path)
    for name, plan in plans.items():
        _merge_affinity(plan, settings, warnings)
        _merge_balancing(plan, setter[name], settings, warnings)
        _merge_service_upstream(plan, setter[name], settings, warnings)
    return plans


def _merge_balancing(
    plan: BackendPlan, setter: Ingress, settings: Mapping[str, IngressSettings], warnings: list[str]
) -> None:
    name = plan.backend.cluster_name
    balancing = plan.balancing = settings[setter.ref].balancing
    for ingress in plan.users:
        own = settings[ingress.ref].balancing
        if ingress is not setter and own is not None and own != balancing:
            warnings.append(
                f"{ingress.ref}: its upstream-hash-by and load-balance settings do not apply to"
                f" backend {name}: those of {setter.ref} do, as in ingress-nginx"
            )
    if plan.affinity is not None and balancing is not None:
        warnings.append(
            f"{setter.ref}: upstream-hash-by and load-balance have no effect on backend {name}:"
            " its affinity cookie picks the endpoint, as in ingress-nginx"
        )


def _merge_service_upstream(
    plan: BackendPlan, setter: Ingress, settings: Mapping[str, IngressSettings], warnings: list[str]
) -> None:
    """service-upstream is the setting of the Ingress that creates ingress-nginx's upstream
    (`setter`, as merge_backends finds it)."""
    name = plan.backend.cluster_name
    wanted = plan.service_upstream = settings[setter.ref].service_upstream
    for ingress in plan.users:
        if settings[ingress.ref].service_upstream != wanted:
            warnings.append(
                f"{ingress.ref}: service-upstream does not apply to backend {name}:"
                f" {setter.ref} sets it up ({'on' if wanted else 'off'}), as in ingress-nginx"
            )


def _merge_affinity(
    plan: BackendPlan, settings: Mapping[str, IngressSettings], warnings: list[str]
) -> None:
    with_affinity = [ingress for ingress in plan.users if settings[ingress.ref].affinity]
    if not with_affinity:
        return
    name = plan.backend.cluster_name
    order = "ingress-nginx's order: oldest first, then by namespace/name descending"
    # ingress-nginx takes the mode from any Ingress of the backend, with affinity or not.
    modes = [(ingress, settings[ingress.ref].mode) for ingress in plan.users]
    set_modes = [(ingress, mode) for ingress, mode in modes if mode is not None]
    mode = set_modes[0][1] if set_modes else AffinityMode.BALANCED
    for ingress, own in set_modes:
        if own is not mode:
            warnings.append(
                f"{ingress.ref}: affinity-mode {own} does not apply to backend {name}:"
                f" {set_modes[0][0].ref} sets {mode} first ({order})"
            )
    cookie_setter = with_affinity[-1]
    cookie = settings[cookie_setter.ref].cookie
    plan.affinity = Affinity(mode=mode, cookie=cookie)
    for ingress in with_affinity:
        if settings[ingress.ref].cookie != cookie:
            warnings.append(
                f"{ingress.ref}: its session-cookie-* settings do not apply to backend {name}:"
                f" those of {cookie_setter.ref}, processed last, do ({order})"
            )
