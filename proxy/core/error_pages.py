"""custom-http-errors and default-backend (docs/behaviour.md, "Custom error pages"): the
requests the default backend is sent (which answers it gives instead: `routing.ErrorPages`).

As ingress-nginx's nginx.tmpl: `error_page <code> = @custom_<backend>_<code>` hands an answer
with a listed code to a named location that asks the default backend for `/` with X-Code,
X-Format (the client's Accept), X-Original-URI, X-Namespace, X-Ingress-Name, X-Service-Name,
X-Service-Port and X-Request-ID; the client gets what that backend answers, status included,
and nothing of it is intercepted again.
"""

from __future__ import annotations

from proxy.core.headers import Headers, Request

# X-Namespace, X-Ingress-Name, X-Service-Name and X-Service-Port of a location, as header pairs
About = tuple[tuple[bytes, bytes], ...]

# the headers nginx's proxy_set_header gives the error backend: a client's own are dropped, so
# it cannot tell the error backend which error, Ingress or Service it is answering for
SET_HEADERS = frozenset(
    {
        b"x-code",
        b"x-format",
        b"x-original-uri",
        b"x-namespace",
        b"x-ingress-name",
        b"x-service-name",
        b"x-service-port",
    }
)
# the same, for a location whose Service has no endpoints (nginx.tmpl, "custom-default-backend-")
_STAND_IN_DROPPED = SET_HEADERS - {b"x-original-uri"}


def error_request(request: Request, code: int, about: About) -> Request:
    """What the error backend is asked for an answer `code` to `request`: the same method and
    headers, for `/` and without a body, with the headers that name the error."""
    forward = _without(request.forward, SET_HEADERS)
    forward += [
        (b"X-Code", b"%d" % code),
        *_format(request),
        (b"X-Original-URI", request.target),
        *about,
    ]
    return Request(
        method=request.method,
        target=b"/",
        http11=request.http11,
        forward=forward,
        spliced=None,
        host=request.host,
        host_header=request.host_header,
        cookie=request.cookie,
        user_agent=request.user_agent,
        forwarded_for=request.forwarded_for,
        request_id=request.request_id,
        content_length=None,
        chunked=False,
        upgrade=None,
    )


def stand_in_request(request: Request, about: About) -> Request:
    """A request to a location whose Service has no endpoints, as the default backend that
    stands in is sent it: unchanged, with X-Code: 503 and the headers naming the location."""
    forward = _without(request.forward, _STAND_IN_DROPPED)
    forward += [(b"X-Code", b"503"), *_format(request), *about]
    return request.edited(forward)


def _format(request: Request) -> list[tuple[bytes, bytes]]:
    """X-Format: the client's Accept; nginx sends no header for an empty value."""
    for name, value in request.forward:
        if name.lower() == b"accept" and value:
            return [(b"X-Format", value)]
    return []


def _without(headers: Headers, names: frozenset[bytes]) -> list[tuple[bytes, bytes]]:
    return [(name, value) for name, value in headers if name.lower() not in names]
