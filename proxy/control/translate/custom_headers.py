"""custom-headers: the ConfigMap an Ingress names, read into the response headers its paths set,
or why its paths answer 503 (docs/behaviour.md, "Custom response headers"). Pure: no I/O.

As ingress-nginx (annotations/customheaders): a ConfigMap that is missing, or holds a header
name or value outside its character sets, denies the Ingress's locations. Beyond it: a
ConfigMap of another namespace is refused too, as its documentation says; and a header the
proxy itself must write (framing, connection handling, the affinity cookie) is dropped with a
warning. ingress-nginx's global-allowed-response-headers list has no counterpart here
(docs/ingress-nginx-compat.md, "Custom response headers").
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping

from proxy.control.translate.annotations import PREFIX, IngressSettings
from proxy.control.translate.objects import KubeObject
from proxy.core.custom_headers import ResponseHeaders

# the annotations that name a ConfigMap of headers (the other: auth_headers.py)
_ANNOTATIONS = (f"{PREFIX}custom-headers", f"{PREFIX}auth-proxy-set-headers")

# ingress-nginx's headerRegexp and valueRegexp (no control characters: no header injection)
_NAME = re.compile(r"[a-zA-Z0-9\-_]+")
_VALUE = re.compile(r"""[a-zA-Z0-9_ :;.,\\/"'?!(){}\[\]@<>=\-+*#$&`|~^%]+""")
# what the proxy writes itself: the body's framing, the connection's, and the affinity cookie
OWNED = frozenset(
    {
        "connection",
        "content-length",
        "keep-alive",
        "proxy-connection",
        "set-cookie",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)


def named_config_maps(ingresses: Iterable[KubeObject]) -> set[tuple[str, str]]:
    """(namespace, name) of each ConfigMap these Ingress objects' custom-headers and
    auth-proxy-set-headers name, read loosely: for deciding what may change routes, not for
    routing."""
    named = set()
    for ingress in ingresses:
        annotations = (ingress.get("metadata") or {}).get("annotations") or {}
        for annotation in _ANNOTATIONS:
            ref = annotations.get(annotation)
            if isinstance(ref, str) and ref.strip().count("/") == 1:
                namespace, name = ref.strip().split("/")
                named.add((namespace, name))
    return named


def with_response_headers(
    settings: IngressSettings,
    namespace: str,
    config_maps: Mapping[tuple[str, str], Mapping[str, str]],
) -> IngressSettings:
    """`settings` with the headers its custom-headers ConfigMap sets, or denied with a warning
    saying why."""
    ref = settings.custom_headers
    if ref is None:
        return settings
    warnings = list(settings.warnings)
    headers, problem = read_headers("custom-headers", ref, namespace, config_maps, warnings)
    if problem is not None:
        return denied_by(settings, problem, warnings)
    response_headers = ResponseHeaders.of(headers) if headers else None
    return dataclasses.replace(
        settings, response_headers=response_headers, warnings=tuple(warnings)
    )


def denied_by(settings: IngressSettings, problem: str, warnings: list[str]) -> IngressSettings:
    """`settings` whose paths answer 503 because of `problem`, warned about."""
    warnings.append(f"{problem}; its paths answer 503")
    denied = settings.denied or problem
    return dataclasses.replace(settings, denied=denied, warnings=tuple(warnings))


def read_headers(
    annotation: str,
    ref: str,
    namespace: str,
    config_maps: Mapping[tuple[str, str], Mapping[str, str]],
    warnings: list[str],
    *,
    values: re.Pattern[str] = _VALUE,
) -> tuple[dict[str, str], str | None]:
    """The headers of the ConfigMap `ref` (namespace/name) that `annotation` names, those the
    proxy writes itself left out with a warning; or why there are none: the ConfigMap is
    missing, of another namespace, or has a name or a value (not matching `values`) that
    may not be."""
    what = f"{annotation} ConfigMap {ref}"
    parts = ref.split("/")
    if len(parts) != 2:
        return {}, f"{annotation} {ref!r} is not namespace/name"
    if parts[0] != namespace:
        return {}, f"{what}: ConfigMaps of other namespaces are not allowed"
    data = config_maps.get((parts[0], parts[1]))
    if data is None:
        return {}, f"{what} not found"
    headers = {}
    for name, value in data.items():
        if not _NAME.fullmatch(name):
            return {}, f"{what}: {name!r} is not a header name (letters, digits, - and _)"
        if not values.fullmatch(value):
            return {}, f"{what}: the value of {name} holds characters a header value may not"
        if name.lower() in OWNED:
            warnings.append(f"{what}: {name} is the proxy's own to write; ignored")
            continue
        headers[name] = value
    return headers, None
