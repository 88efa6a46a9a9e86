"""The auth-tls-* annotations as ingress-nginx reads them (annotations/authtls/main.go), the CA
Secret they name, and which Ingress sets them for a host: a server-level setting there, taken
from the first Ingress of the host (in processing order) whose Secret has a CA, while any
Ingress of the host whose auth-tls cannot be used turns the whole host into 403
(controller.go, createServers; docs/behaviour.md, "Client certificate authentication").
Pure: no I/O, no logging.

Where ingress-nginx would serve without a client certificate check because a value is invalid
(auth-tls-match-cn) or the Secret has no ca.crt, the host answers 403 here instead: the check
was asked for (docs/ingress-nginx-compat.md, "Client certificates").
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from proxy.control.translate.basic_auth import Secrets
from proxy.control.translate.external_auth import Annotations
from proxy.core.client_auth import VERIFY_ON, VERIFY_OPTIONAL, VERIFY_OPTIONAL_NO_CA, ClientAuth
from proxy.core.routing import Route
from proxy.system.cert_chain import ca_load_error

# (auth-tls-verify-depth is not: Python's ssl cannot set the depth; coverage.py says so)
ANNOTATIONS = (
    "auth-tls-secret",
    "auth-tls-verify-client",
    "auth-tls-error-page",
    "auth-tls-pass-certificate-to-upstream",
    "auth-tls-match-cn",
)
_VERIFY = frozenset({VERIFY_ON, "off", VERIFY_OPTIONAL, VERIFY_OPTIONAL_NO_CA})
# ingress-nginx's redirectRegex; only its absolute URLs are answered here (a 302 there)
_ERROR_PAGE = re.compile(
    r"(@[A-Za-z0-9_-]+|((https?://)?[A-Za-z0-9\-.]+(:\d+)?)?(/[A-Za-z0-9\-_.]+)*/?)"
)
_URL = re.compile(r"https?://.+")
_CRL = b"-----BEGIN X509 CRL-----"


@dataclass(frozen=True, slots=True)
class AuthTls:
    """What one Ingress's auth-tls-* annotations ask for; the Secret is looked up later."""

    secret: str  # as written: name or namespace/name
    verify: str = VERIFY_ON
    error_page: str = ""
    pass_certificate: bool = False
    match_cn: re.Pattern[str] | None = None
    problem: str | None = None  # an annotation that makes the host answer 403


def parse(reader: Annotations, go_bool: Callable[[str], bool]) -> AuthTls | None:
    """The auth-tls-* annotations; None without auth-tls-secret (the others are then ignored)."""
    secret = reader.text("auth-tls-secret")
    if secret is None:
        for name in ANNOTATIONS[1:]:
            reader.ignored_without(name, "auth-tls-secret")
        return None
    problem = None
    verify = reader.value("auth-tls-verify-client", _verify)
    error_page = reader.value("auth-tls-error-page", _error_page)
    pass_certificate = reader.value("auth-tls-pass-certificate-to-upstream", go_bool)
    match_cn = None
    match_text = reader.text("auth-tls-match-cn")
    if match_text is not None:
        try:
            match_cn = _match_cn(match_text)
        except ValueError as error:
            problem = f"auth-tls-match-cn: {error}"
            reader.warnings.append(f"nginx.ingress.kubernetes.io/{problem}; its hosts answer 403")
    return AuthTls(
        secret=secret,
        verify=verify or VERIFY_ON,
        error_page=error_page or "",
        pass_certificate=pass_certificate or False,
        match_cn=match_cn,
        problem=problem,
    )


def _verify(text: str) -> str:
    if text not in _VERIFY:
        raise ValueError(f"{text!r} is not on, off, optional or optional_no_ca; on applies")
    return text


def _error_page(text: str) -> str:
    if not _ERROR_PAGE.fullmatch(text):
        raise ValueError(f"{text!r} is not a URL or path")
    if not _URL.fullmatch(text):
        raise ValueError(
            f"{text!r} is no http(s) URL: a path is an nginx internal redirect, not built here;"
            " the 400 is answered"
        )
    return text


def _match_cn(text: str) -> re.Pattern[str]:
    """ingress-nginx's CommonNameAnnotationValidator: `CN=` then a regular expression; the
    whole value is searched in the subject DN, as nginx's `$ssl_client_s_dn !~`."""
    if not text.startswith("CN="):
        raise ValueError(f"{text!r} does not start with CN=")
    try:
        return re.compile(text)
    except re.error as error:
        raise ValueError(f"{text!r} is not a valid regular expression ({error})") from None


def client_auth(spec: AuthTls, namespace: str, secrets: Secrets) -> ClientAuth:
    """The host setting `spec` makes once its Secret is looked up; `refused` says why it
    cannot be used (the host then answers 403)."""
    secret_namespace, _, name = spec.secret.rpartition("/")
    secret_namespace = secret_namespace or namespace
    source = f"Secret {secret_namespace}/{name}"
    ca, crl, refused = b"", None, spec.problem
    if refused is None and secret_namespace != namespace:
        refused = f"auth-tls-secret {source}: Secrets of other namespaces are not allowed"
    elif refused is None:
        ca, crl, refused = _read_ca(source, secrets.get((secret_namespace, name)))
    return ClientAuth(
        source=source,
        ca=ca,
        crl=crl,
        verify=spec.verify,
        error_page=spec.error_page,
        pass_certificate=spec.pass_certificate,
        match_cn=spec.match_cn,
        refused=refused,
    )


def _read_ca(
    source: str, data: Mapping[str, bytes] | None
) -> tuple[bytes, bytes | None, str | None]:
    """(ca.crt, ca.crl, None), or why the Secret cannot be used."""
    if data is None:
        return b"", None, f"auth-tls-secret {source} not found"
    ca = data.get("ca.crt")
    if not ca:
        return b"", None, f"auth-tls-secret {source} has no ca.crt"
    error = ca_load_error(ca)
    if error is not None:
        return (
            b"",
            None,
            f"auth-tls-secret {source}: ca.crt holds no PEM certificate OpenSSL loads ({error})",
        )
    crl = data.get("ca.crl")
    if crl is not None and _CRL not in crl:
        return b"", None, f"auth-tls-secret {source}: ca.crl holds no PEM X509 CRL"
    return ca, crl, None


@dataclass(frozen=True, slots=True)
class HostsOf:
    """What `by_host` needs of one Ingress, in processing order."""

    ref: str
    hosts: tuple[str | None, ...]  # its rules' hosts; None: the catch-all server
    aliases: tuple[str, ...]
    auth: ClientAuth | None


def by_host(ingresses: Iterable[HostsOf], warnings: list[str]) -> dict[str | None, ClientAuth]:
    """Each host's client certificate setting: the first Ingress with a usable CA sets it; an
    Ingress whose auth-tls cannot be used makes its hosts refuse every request, whatever
    another sets (as ingress-nginx's AuthTLSError, a `return 403` in the server)."""
    chosen: dict[str | None, ClientAuth] = {}
    refused: dict[str | None, ClientAuth] = {}
    setter: dict[str | None, str] = {}
    for ingress in ingresses:
        auth = ingress.auth
        if auth is None:
            continue
        if auth.refused is not None:
            warnings.append(f"{ingress.ref}: {auth.refused}; its hosts answer 403")
        for host in dict.fromkeys((*ingress.hosts, *ingress.aliases)):
            if auth.refused is not None:
                refused.setdefault(host, auth)
            elif host not in chosen:
                chosen[host] = auth
                setter[host] = ingress.ref
            elif chosen[host] != auth:
                warnings.append(
                    f"{ingress.ref}: auth-tls-* for {host or 'the catch-all server'} ignored:"
                    f" {setter[host]} set it first"
                )
    return {**chosen, **refused}


def with_client_auth(route: Route, auths: Mapping[str | None, ClientAuth]) -> Route:
    auth = auths.get(route.host)
    return route if auth is None else dataclasses.replace(route, client_auth=auth)
