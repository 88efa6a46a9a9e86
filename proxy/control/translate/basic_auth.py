"""auth-type, auth-secret, auth-secret-type and auth-realm as ingress-nginx reads them
(annotations/auth/main.go), and the users of an Ingress once its Secret is looked up
(docs/behaviour.md, "Basic authentication"). Pure: no I/O, no logging.

Where ingress-nginx would serve an Ingress without authentication because an annotation is
invalid, its paths answer 503 here instead: auth was asked for, and serving without it would
open what it closes (docs/ingress-nginx-compat.md, "Basic authentication").
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from proxy.core.basic_auth import BasicAuth
from proxy.core.htpasswd import known_scheme, parse_htpasswd

Secrets = Mapping[tuple[str, str], Mapping[str, bytes]]  # each Secret's keys, by (namespace, name)

AUTH_SECRET_ANNOTATION = "nginx.ingress.kubernetes.io/auth-secret"
# the annotations whose Secret is kept whole: basic auth's users, auth-tls's CA and CRL
NAMING_SECRETS = (AUTH_SECRET_ANNOTATION, "nginx.ingress.kubernetes.io/auth-tls-secret")
AUTH_FILE = "auth-file"  # the Secret's `auth` key is an htpasswd file (the default)
AUTH_MAP = "auth-map"  # each key of the Secret is a user, its value the hash
# ingress-nginx's no-auth-locations default: paths starting with these are served without
# authentication (ACME HTTP-01 challenges answered by a path added to the Ingress itself)
NO_AUTH_LOCATIONS = ("/.well-known/acme-challenge",)
_SECRET_CHARS = re.compile(r"[-._~a-zA-Z0-9/:]+")  # ingress-nginx's BasicCharsRegex
_REALM_CHARS = re.compile(r"[-._~a-zA-Z0-9/: ]*")  # its CharsWithSpace


@dataclass(frozen=True, slots=True)
class AuthSecret:
    """What the annotations ask for: the Secret (as written, `name` or `namespace/name`), its
    format and the realm; looked up by `with_basic_auth`."""

    secret: str
    secret_type: str = AUTH_FILE
    realm: str = ""  # ingress-nginx's default: `auth_basic ""`, a challenge with realm=""


def parse_auth_type(text: str) -> str:
    """`basic`; any other value refuses the paths (digest is not supported here)."""
    if text == "digest":
        raise ValueError("digest is not supported here")
    if text != "basic":
        raise ValueError(f"{text!r} is not basic or digest")
    return text


def parse_secret_type(text: str) -> str:
    if text not in (AUTH_FILE, AUTH_MAP):
        raise ValueError(f"{text!r} is not {AUTH_FILE} or {AUTH_MAP}")
    return text


def parse_secret_name(text: str) -> str:
    if not _SECRET_CHARS.fullmatch(text) or text.count("/") > 1:
        raise ValueError(f"{text!r} is not name or namespace/name")
    return text


def parse_realm(text: str) -> str:
    if not _REALM_CHARS.fullmatch(text):
        raise ValueError(f"{text!r} has characters other than letters, digits, space and -._~/:")
    return text


def named_secrets(ingresses: Iterable[Any]) -> frozenset[tuple[str, str]]:
    """(namespace, name) of each Secret an Ingress object names in its auth-secret or
    auth-tls-secret annotation: the Secrets the Kubernetes source keeps whole (ca.crl is none
    of the keys it keeps of the others; docs/behaviour.md, "Startup")."""
    names = set()
    for obj in ingresses:
        metadata = obj.get("metadata") if isinstance(obj, Mapping) else None
        if not isinstance(metadata, Mapping):
            continue
        annotations = metadata.get("annotations")
        if not isinstance(annotations, Mapping):
            continue
        for value in (annotations.get(name) for name in NAMING_SECRETS):
            if not isinstance(value, str) or not _SECRET_CHARS.fullmatch(value.strip()):
                continue
            namespace, _, name = value.strip().rpartition("/")
            names.add((namespace or str(metadata.get("namespace") or "default"), name))
    return frozenset(names)


def basic_auth(
    spec: AuthSecret, namespace: str, secrets: Secrets
) -> tuple[BasicAuth | None, str, list[str]]:
    """The users `spec` names, or None and why; warnings for users no password can match."""
    secret_namespace, _, name = spec.secret.rpartition("/")
    secret_namespace = secret_namespace or namespace
    ref = f"{secret_namespace}/{name}"
    if secret_namespace != namespace:
        return None, f"auth-secret {ref}: Secrets of other namespaces are not allowed", []
    data = secrets.get((secret_namespace, name))
    if data is None:
        return None, f"auth-secret {ref} not found", []
    if spec.secret_type == AUTH_FILE:
        text = data.get("auth")
        if text is None:
            return None, f"auth-secret {ref} has no auth key (auth-secret-type auth-file)", []
    else:
        # as ingress-nginx writes the file: a `key:value` line for each key
        text = b"".join(b"%s:%s\n" % (key.encode(), data[key]) for key in sorted(data))
    users = parse_htpasswd(text)
    warnings = [
        f"auth-secret {ref}: user {user.decode('latin-1')!r}: the hash is of no scheme known here"
        " (bcrypt, $apr1$, $1$, $5$, $6$, {SHA}, {SSHA}, {PLAIN}, DES); no password matches it"
        for user, hashed in users
        if not known_scheme(hashed)
    ]
    if not users:
        warnings.append(f"auth-secret {ref} lists no user; every request answers 401")
    return BasicAuth(spec.realm, users, source=f"Secret {ref}"), "", warnings
