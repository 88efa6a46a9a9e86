"""auth-proxy-set-headers: the ConfigMap an Ingress names, read into the headers its external
auth subrequest carries, or why its paths answer 503
(docs/behaviour.md, "External authentication"). Pure: no I/O.

As ingress-nginx (annotations/authreq): a ConfigMap that is missing, not written namespace/name,
of another namespace, or with a header name outside letters, digits, - and _ denies the
Ingress's locations. Beyond it: a value with control characters (CR, LF: a header injection
in the subrequest) denies them too, and the headers the proxy writes itself are dropped with a
warning (docs/ingress-nginx-compat.md, "External authentication").
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping

from proxy.control.translate.annotations import IngressSettings
from proxy.control.translate.custom_headers import denied_by, read_headers

# any text but control characters (tab aside): nginx's proxy_set_header takes any string
_VALUE = re.compile(r"[^\x00-\x08\x0a-\x1f\x7f]*")


def with_auth_headers(
    settings: IngressSettings,
    namespace: str,
    config_maps: Mapping[tuple[str, str], Mapping[str, str]],
) -> IngressSettings:
    """`settings` whose external auth carries its ConfigMap's headers, or denied with a warning
    saying why."""
    auth = settings.external_auth
    if auth is None or auth.set_headers_from is None:
        return settings
    warnings = list(settings.warnings)
    headers, problem = read_headers(
        "auth-proxy-set-headers", auth.set_headers_from, namespace, config_maps, warnings,
        values=_VALUE,
    )  # fmt: skip
    if problem is not None:
        # (nobody is asked: ingress-nginx's denied location has no auth config left either)
        return denied_by(dataclasses.replace(settings, external_auth=None), problem, warnings)
    auth = dataclasses.replace(auth, set_headers=tuple(sorted(headers.items())))
    return dataclasses.replace(settings, external_auth=auth, warnings=tuple(warnings))
