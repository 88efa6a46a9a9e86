"""An Ingress's settings once its auth-secret is looked up: the users of its basic
authentication, or why its paths answer 503 (docs/behaviour.md, "Basic authentication").
Pure: no I/O, no logging."""

from __future__ import annotations

import dataclasses

from proxy.control.translate.annotations import IngressSettings
from proxy.control.translate.basic_auth import Secrets, basic_auth


def with_basic_auth(
    settings: IngressSettings,
    namespace: str,
    secrets: Secrets,
) -> IngressSettings:
    """`settings` with the users of its auth-secret, or `denied` and a warning saying why not."""
    spec = settings.auth_secret
    if spec is None or settings.denied is not None:
        return settings
    auth, problem, warnings = basic_auth(spec, namespace, secrets)
    if auth is None:
        warnings.append(f"{problem}; its paths answer 503")
        return dataclasses.replace(
            settings, denied=problem, warnings=(*settings.warnings, *warnings)
        )
    return dataclasses.replace(settings, basic_auth=auth, warnings=(*settings.warnings, *warnings))
