"""One request's trip through the proxy: choose an endpoint, forward, relay the answer, retry.

An `Exchange` is driven by callbacks only: the downstream connection feeds it the request body,
the upstream connection feeds it the response (it is the upstream's `ResponseSink`), and a pool's
connect task reports a new connection. No coroutine runs per request when a pooled connection is
free. Retries (docs/behaviour.md, "Retries"): a failed try picks anew or retries the
cookie's endpoint, never more than proxy-next-upstream-tries, and never once the upstream may
have acted on a non-idempotent request.

The exchange answers through `Downstream`, the little it needs of the client connection, as the
upstream connection answers it through `ResponseSink`: it never knows the downstream's class.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import partial
from time import perf_counter
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit

from mypy_extensions import trait

from proxy.core import headers as h
from proxy.core.access import AccessList
from proxy.core.affinity import Decision, Outcome
from proxy.core.basic_auth import BasicAuth, authorization, without_authorization
from proxy.core.canary import takes_canary
from proxy.core.client_auth import (
    ALLOWED,
    ClientAuth,
    PeerCertificate,
    answer_status,
    certificate_refusal,
    refusal_answer,
    upstream_headers,
)
from proxy.core.cookies import parse_cookie
from proxy.core.cors import CORS_HEADERS, preflight_response, request_origin, with_lines
from proxy.core.error_pages import error_request, stand_in_request
from proxy.core.errors import (
    BadRequest,
    BodyTooLarge,
    Forbidden,
    InvalidBackend,
    NoEndpoint,
    NoRoute,
    ProxyError,
    UpstreamError,
    UpstreamTimeout,
    error_response,
    redirect_response,
)
from proxy.core.external_auth import (
    ExternalAuth,
    Facts,
    answer_lines,
    forwarded_with,
    refusal,
    signin_location,
    subrequest_headers,
)
from proxy.core.filters import Redirect, rewritten
from proxy.core.mirror import Mirror, mirrored
from proxy.core.model import Endpoint
from proxy.core.outliers import EJECTING_REASONS, substitute
from proxy.core.ratelimit import RateLimits
from proxy.core.rewrites import FixedRedirect
from proxy.core.routing import ErrorPages, Route
from proxy.core.sessions import SessionKind, SessionPolicy
from proxy.core.uri import climbs_above_root
from proxy.dataplane.basic_auth import ALLOW, DENY
from proxy.dataplane.basic_auth import check as check_password
from proxy.dataplane.external_auth import AuthAnswer, AuthCheck, AuthState
from proxy.dataplane.mirror import MirrorCopy
from proxy.dataplane.throttle import Throttle
from proxy.dataplane.upstream import ResponseSink, UpstreamConnection
from proxy.observability.proxied_request import ProxiedRequest

if TYPE_CHECKING:
    from proxy.dataplane.context import ServerContext
    from proxy.observability.metrics import ClusterView

IDEMPOTENT: Final = frozenset({b"GET", b"HEAD", b"PUT", b"DELETE", b"OPTIONS", b"TRACE"})
# Request bodies up to this size are kept until the response starts, so a failed try can replay
# them; a larger body streams through once and its request is not retried after sending.
REPLAY_LIMIT: Final = 64 * 1024
# Body bytes buffered while no upstream connection is ready, before reading from the client stops.
BUFFER_LIMIT: Final = 256 * 1024

# Why an exchange holds its downstream's reading (bits: the downstream reads again once no reason
# is left, its own reasons included).
WAIT_UPSTREAM: Final = 1  # body buffered while the upstream connection is not ready
WAIT_UPSTREAM_WRITE: Final = 2  # the upstream is not taking the body as fast as it comes


@trait
class Downstream:
    """What an exchange needs of the client connection it answers (the mirror of the upstream's
    `ResponseSink`, and a mypyc trait for the same reason)."""

    __slots__ = ()
    via: h.Forwarding
    tls: bool
    write_paused: bool  # the client is not keeping up with what is written to it

    def write(self, data: bytes) -> None: ...
    def cork(self) -> None:
        """Collect writes until `uncork`: what one upstream read produces leaves in one send."""

    def uncork(self) -> None: ...
    def close_now(self) -> None:
        """End the connection after what is already written: an answer cut short."""

    def hold_reading(self, reason: int, held: bool) -> None:
        """Stop reading from the client for `reason` (`WAIT_UPSTREAM...`), or no longer for it."""

    def timer_within(self, delay: float, now: float) -> None:
        """Make sure the connection's timer looks at this exchange (`read_time_left`) within
        `delay` of `now`, loop time."""

    def start_tunnel(self, exchange: Exchange) -> None:
        """The upstream accepted an Upgrade: from now on bytes pass through both ways, and
        reading from the client resumes whatever held it."""

    def client_certificate(self) -> tuple[ClientAuth | None, PeerCertificate | None]:
        """What the TLS handshake settled (`proxy.dataplane.client_auth.handshake_facts`)."""
        return None, None

    def exchange_finished(self, exchange: Exchange) -> None:
        """The answer is complete: the next pipelined request may begin, or the connection
        closes or idles."""


class GatewayState:
    """What an exchange on a Gateway API route keeps besides an Ingress one's: made only for
    those, so an Ingress request pays one attribute for all of it."""

    __slots__ = ("deadline", "pinned", "session_header")

    def __init__(self) -> None:
        self.deadline = 0.0  # loop time by which the answer must start (timeouts.request); 0: none
        self.pinned: Endpoint | None = None  # the endpoint a session token names
        self.session_header = b""  # a new header session's token, as a header line


class Exchange(ResponseSink, ProxiedRequest):
    __slots__ = (
        "auth",
        "awaiting_upstream",
        "body_received",
        "body_sent",
        "client",
        "connecting",
        "cookie_value",
        "cors_lines",
        "ctx",
        "downstream",
        "endpoint",
        "error_code",
        "ewma_started",
        "finished",
        "framing",
        "gateway",
        "keep_alive",
        "last_error",
        "last_read",
        "limit_zone",
        "mirror_copy",
        "new_cookie",
        "outcome",
        "pending",
        "pending_size",
        "replay",
        "replay_size",
        "request",
        "request_done",
        "request_id",
        "response_started",
        "route",
        "send_timer",
        "sent_body",
        "sent_done",
        "sent_head",
        "set_cookie",
        "started",
        "started_at",
        "status",
        "throttle",
        "tried",
        "tried_view",
        "tries",
        "tunnel",
        "tunnel_pending",
        "upstream",
        "upstream_head_bytes",
        "upstream_started_at",
        "via",
    )

    def __init__(
        self, ctx: ServerContext, downstream: Downstream, request: h.Request, keep_alive: bool
    ) -> None:
        self.ctx = ctx
        self.downstream = downstream
        self.via = downstream.via  # (kept: upstream heads, redirects and the access log read it)
        # the client's address: the peer's, or with use-forwarded-headers the one the trusted
        # proxies name (set by the downstream; docs/behaviour.md, "Access by client address")
        self.client = downstream.via.client_ip
        self.request = request
        self.keep_alive = keep_alive
        self.route: Route | None = None
        self.status = 0
        self.started = False  # begin() called: this exchange owns the downstream writes
        self.finished = False
        self.request_done = False  # the whole request body has arrived from the client
        self.sent_done = False  # ... and has been passed to the current upstream
        self.body_received = 0
        self.pending: list[bytes] = []  # request body that arrived before an upstream was ready
        self.pending_size = 0
        self.replay: list[bytes] | None = [] if request.has_body else None
        self.replay_size = 0
        self.body_sent = False  # any request body byte written to an upstream
        self.tried: list[Endpoint] = []
        self.tries = 0
        self.last_error: UpstreamError | None = None
        self.cookie_value: str | None = None
        self.new_cookie: str | None = None  # the affinity cookie value `set_cookie` carries
        self.set_cookie: bytes | None = None
        self.gateway: GatewayState | None = None  # for Gateway API routes only
        self.cors_lines = b""  # CORS headers every answer gets (docs/behaviour.md, "CORS")
        self.limit_zone = ""  # the limit-connections zone this request counts in, until done
        self.auth: AuthState | None = None  # for routes with external auth only
        self.mirror_copy: MirrorCopy | None = None  # mirror-target's copy until it is sent
        # the status handed to the default backend (custom-http-errors), 0 before: from then on
        # the request body goes nowhere (docs/behaviour.md, "Custom error pages")
        self.error_code = 0
        self.endpoint: Endpoint | None = None
        self.ewma_started = 0.0  # perf_counter of an EWMA-picked try, fed back at the end
        self.upstream: UpstreamConnection | None = None
        self.connecting: asyncio.Task[None] | None = None
        self.framing = h.Framing.NONE
        self.response_started = False
        self.last_read = 0.0
        self.awaiting_upstream = False  # request sent: proxy-read-timeout runs between reads
        self.send_timer: asyncio.TimerHandle | None = None
        self.throttle: Throttle | None = None  # limit-rate's pacing of the answer, if any
        self.tunnel = False
        self.tunnel_pending: list[bytes] = []  # the new protocol's first bytes, until a 101
        self.request_id = request.request_id or self.ctx.new_request_id()
        if request.upgrade is not None:
            # After an Upgrade the connection is a tunnel or, if refused, finished.
            self.keep_alive = False
        self.upstream_head_bytes = b""
        # for metrics and the access log
        self.started_at = perf_counter()
        self.upstream_started_at = 0.0
        self.outcome: Outcome | None = None  # of the last try's endpoint choice
        self.tried_view: ClusterView | None = None  # the metrics' view of the last try's cluster
        self.sent_head = 0
        self.sent_body = 0

    # -- from the downstream connection ---------------------------------------------------------

    def begin(self) -> None:
        """Route the request and start the first try. Runs once this exchange is at the front."""
        self.started = True
        request = self.request
        target = request.target
        query = target.find(b"?")
        path = (target if query < 0 else target[:query]).decode("latin-1")
        if climbs_above_root(path):  # as nginx's URI parser: 400, and the connection closes
            self.keep_alive = False
            self.fail(BadRequest("the path climbs above the root"))
            return
        try:
            route = self.ctx.route(request.host, path, request, self.via.proto == b"https")
        except ProxyError as error:
            self.fail(error)
            return
        if route is None:
            self.fail(NoRoute())
            return
        cors = route.cors  # the location's, which is the main Ingress's, not a canary's
        access = route.access  # the location's own, not a canary's (as ingress-nginx)
        limits = route.limits  # (the same)
        basic_auth = route.basic_auth  # the location's too
        if route.mirror is not None and not mirrored(request):
            self._start_copy(route.mirror)  # (the location's: its Ingress's annotations)
        client_auth = route.client_auth  # its host's (a server-level setting)
        location = route
        if route.canary is not None:
            route = self._canary_side(route)
        forwarded = request  # what the upstream is sent: Gateway API filters may change it
        if route.gateway_extras:
            chosen = self._gateway_begin(route, path)
            if chosen is None:
                return  # answered here
            route, forwarded = chosen
        self.route = route
        if client_auth is not None and (self.downstream.tls or not route.ssl_redirect):
            # before any phase, as nginx's checks of the handshake; a plain-HTTP request that is
            # to be redirected to https is checked there
            # (docs/behaviour.md, "Client certificate authentication")
            checked = self._client_certificate(client_auth, forwarded)
            if checked is None:
                return  # answered here
            forwarded = checked
        if cors is not None and self._cors_preflight(cors.lines(request_origin(request.forward))):
            return  # answered here, before ssl-redirect, as nginx's rewrite phase does
        if route.ssl_redirect and not self.downstream.tls:
            self._redirect_to_https(route)
            return
        if limits is not None and not self._within_limits(limits):
            return  # (nginx's preaccess phase: after its rewrite phase, before its access phase)
        if location.satisfy_any:
            self._any_access(access, forwarded, location)
            return
        if access is not None and not access.allows(self.client):
            # (after the redirect: nginx's rewrite phase comes before its access phase)
            self.fail(Forbidden())
            return
        if basic_auth is not None:
            # nginx's access phase too, after allow/deny (docs/behaviour.md, "Basic authentication")
            self._basic_auth(basic_auth, forwarded, location)
            return
        self._authorized(forwarded, location)

    def _client_certificate(self, auth: ClientAuth, forwarded: h.Request) -> h.Request | None:
        """`forwarded` with the ssl-client-* headers, or None once refused and answered."""
        negotiated, peer = self.downstream.client_certificate()
        why = certificate_refusal(auth, self.downstream.tls, negotiated, peer)
        if why == ALLOWED:
            return forwarded.edited(upstream_headers(auth, peer, forwarded.forward))
        self._reply(answer_status(why, auth), partial(refusal_answer, why, auth))
        return None

    def _authorized(self, forwarded: h.Request, location: Route) -> None:
        """Past the address lists and basic authentication: external authentication when the
        location has it, else the first try."""
        external_auth = location.external_auth
        if external_auth is not None:
            # nginx's access phase, after the address lists: the request waits for the auth
            # service's answer, which resumes it (docs/behaviour.md, "External authentication")
            self._authenticate(external_auth, forwarded, location)
            return
        self._forward(forwarded)

    # -- satisfy any (docs/behaviour.md, "satisfy") ---------------------------------------------

    def _any_access(self, access: AccessList | None, forwarded: h.Request, location: Route) -> None:
        """nginx's access phase with `satisfy any`: the address lists, basic authentication and
        external authentication in turn, until one lets the request through."""
        if location.basic_auth is not None:
            forwarded = without_authorization(forwarded)  # (proxy_set_header, whoever lets it in)
        verdict = None if access is None else access.verdict(self.client)
        if verdict:
            self._forward(forwarded)  # an allow rule: no credentials asked for
        elif location.basic_auth is not None:
            self._basic_auth(location.basic_auth, forwarded, location)
        else:
            self._any_external(forwarded, location, 0 if verdict is None else 403)

    def _any_external(self, forwarded: h.Request, location: Route, refused: int) -> None:
        """satisfy any, past the address lists and basic authentication, which `refused` (403,
        401) or did not decide (0): external authentication if the location has it, else the
        refusal; 401 (a check asked for credentials) comes before 403, as nginx's access_code."""
        external_auth = location.external_auth
        if external_auth is not None:
            self._authenticate(external_auth, forwarded, location, refused)
        elif refused == 401:
            assert location.basic_auth is not None  # (only basic authentication asks for them)
            self._reply(401, location.basic_auth.answer)
        elif refused:
            self.fail(Forbidden())
        else:
            self._forward(forwarded)

    def _forward(self, forwarded: h.Request) -> None:
        """Past every check of `begin`: the body size limit, then the first try (of
        `forwarded`)."""
        route = self.route
        request = self.request
        assert route is not None
        limit = route.upstream.body_size
        declared = request.content_length or 0
        if limit and max(declared, self.body_received) > limit:
            # (body_received: a pipelined request's body may have arrived while it queued)
            self.fail(BodyTooLarge())
            return
        copy = self.mirror_copy
        if copy is not None:
            # nginx's precontent phase, past every check (docs/behaviour.md, "Mirroring")
            copy.passed = True
            if self.request_done or not copy.body:
                self._send_copy(copy)
        cluster = route.cluster
        if cluster.affinity is not None and request.cookie is not None:
            self.cookie_value = parse_cookie(request.cookie, cluster.affinity.cookie.name)
        errors = route.errors
        if errors is not None and errors.stands_in:
            # the default-backend serves a Service without endpoints (content phase)
            forwarded = stand_in_request(forwarded, errors.about)
        self.upstream_head_bytes = h.upstream_head(
            forwarded, self.via, self.request_id, self.client
        )
        self.upstream_started_at = perf_counter()
        self.try_next(previous_failed=False)

    def _within_limits(self, limits: RateLimits) -> bool:
        """limit_req, then limit_conn, as nginx runs them; a refused request is answered here
        (docs/behaviour.md, "Rate and connection limits")."""
        client = self.client
        if not limits.counts(client):
            return True  # limit-allowlist
        ctx = self.ctx
        now = int(ctx.loop.time() * 1000)
        if limits.requests and not ctx.limiter.admit(limits, client, now):
            self._reply(ctx.limit_req_status, partial(error_response, ctx.limit_req_status))
            return False
        if limits.connections:
            if not ctx.limiter.take_connection(limits, client):
                self._reply(ctx.limit_conn_status, partial(error_response, ctx.limit_conn_status))
                return False
            self.limit_zone = limits.zone
        return True

    def _start_copy(self, mirror: Mirror) -> None:
        """Keep the body for mirror-target's copy from here on, with what of it already came
        (a request that waited behind another); a chunked one already framed cannot be told."""
        received: list[bytes] | None = []
        if self.body_received:
            received = None if self.request.chunked else list(self.pending)
        self.mirror_copy = MirrorCopy(mirror, received)

    def _send_copy(self, copy: MirrorCopy) -> None:
        """The copy goes, unless its body could not be kept; the request never waits for it."""
        self.mirror_copy = None
        mirror = copy.mirror
        mirrors = self.ctx.mirrors
        if copy.parts is None:
            mirrors.drop(mirror.target.text)
            return
        facts = self._auth_facts()
        mirrors.send(
            mirror.target.text,
            self.request.method.decode("latin-1"),
            mirror.url(facts),
            mirror.headers(self.request, facts),
            b"".join(copy.parts),
        )

    def _release_connection(self) -> None:
        """The request no longer counts for limit-connections: nginx's limit_conn counts it
        until the answer is done (or the client is gone)."""
        self.ctx.limiter.release_connection(self.limit_zone, self.client)
        self.limit_zone = ""

    def body(self, data: bytes) -> None:
        if self.finished or self.error_code:
            return
        self.body_received += len(data)
        limit = self.route.upstream.body_size if self.route is not None else 0
        if limit and self.body_received > limit:
            self.fail(BodyTooLarge())
            return
        copy = self.mirror_copy
        if copy is not None and copy.body:
            copy.add(data)
        framed = h.chunk(data) if self.request.chunked else data
        if self.replay is not None:
            self.replay_size += len(framed)
            if self.replay_size <= REPLAY_LIMIT:
                self.replay.append(framed)
            else:
                self.replay = None
        if self.upstream is not None and not self.tunnel:
            self.body_sent = True
            self.upstream.send(framed)
        else:
            self.pending.append(framed)
            self.pending_size += len(framed)
            if self.pending_size > BUFFER_LIMIT:
                self.downstream.hold_reading(WAIT_UPSTREAM, True)

    def body_done(self) -> None:
        self.request_done = True
        copy = self.mirror_copy
        if copy is not None and copy.passed:
            self._send_copy(copy)
        if self.upstream is not None and not self.tunnel:
            self._request_sent()

    def tunnel_data(self, data: bytes) -> None:
        """Raw bytes after an Upgrade request (and its body): for the upstream once it agrees."""
        if self.upstream is not None and self.tunnel:
            self.upstream.send(data)
        elif not self.finished:
            self.tunnel_pending.append(data)
            self.pending_size += len(data)
            if self.pending_size > BUFFER_LIMIT:
                self.downstream.hold_reading(WAIT_UPSTREAM, True)

    def downstream_paused(self, paused: bool) -> None:
        if self.upstream is not None and (paused or self.throttle is None or self.throttle.free):
            self.upstream.pause_reading(paused)

    def abort(self) -> None:
        """The client went away: drop the upstream side without reusing it."""
        self.finished = True
        self._stop_timers()
        if self.throttle is not None:
            self.throttle.cancel()
        if self.limit_zone:
            self._release_connection()
        if self.auth is not None:
            self.auth.cancel()  # (no subrequest outlives its request)
        if self.connecting is not None:
            self.connecting.cancel()
            self.connecting = None
        if self.upstream is not None:
            self.upstream.close()
            self.upstream = None

    # -- choosing and connecting ----------------------------------------------------------------

    def try_next(self, previous_failed: bool) -> None:
        route = self.route
        assert route is not None
        cluster = route.cluster
        affinity = cluster.affinity
        ctx = self.ctx
        now = ctx.now()
        session = route.session
        if session is not None:
            decision = self._session_choice(route, previous_failed, now)
        elif affinity is None:
            decision = ctx.loads.choose(cluster, self, now)
        else:
            decision = cluster.balancer.choose(
                self.cookie_value,
                self.tried,
                previous_failed,
                affinity.cookie.change_on_failure,
                ctx.rng,
                now,
                ctx.pid,
            )
        if decision is None:
            self.fail(self.last_error or NoEndpoint())
            return
        ejected = ctx.ejections.ejected
        if ejected and route.upstream.eject_after_failures and decision.endpoint.node in ejected:
            decision = self._instead_of_ejected(decision, route, previous_failed, now)
        new_cookie = None
        if decision.new_key is not None and route.set_cookie is not None:
            new_cookie = f"{decision.new_key}|{cluster.balancer.backend_key}"
            self.set_cookie = route.set_cookie.format(
                new_cookie, now, self.downstream.tls, self.request.user_agent
            ).encode("latin-1")
        elif decision.new_key is not None and session is not None:
            new_cookie = decision.new_key
            self._issue(session, new_cookie, now)
        endpoint = decision.endpoint
        self.outcome = decision.outcome
        self.new_cookie = new_cookie
        self.tried_view = ctx.metrics.count_try(cluster, endpoint)
        self.endpoint = endpoint
        self.tried.append(endpoint)
        self.tries += 1
        self._connect(endpoint)

    # -- external authentication (docs/behaviour.md, "External authentication") ----------------

    def _authenticate(
        self, policy: ExternalAuth, forwarded: h.Request, location: Route, refused: int = -1
    ) -> None:
        """Ask the auth service about this request (for `location`, the route it matched);
        `_authenticated` carries on. The body that arrives meanwhile waits in `pending`, as for
        a connection being opened. `refused`: with satisfy any, what the checks before said."""
        basic_auth = location.basic_auth
        challenge = basic_auth.challenge if refused == 401 and basic_auth is not None else b""
        state = self.auth = AuthState(policy, forwarded, refused, challenge)
        cache = policy.cache
        key = None
        if cache is not None:
            key = (location.host, location.path, location.path_type.value,
                   cache.key.evaluate(self.request, self.client))  # fmt: skip
            cached = self.ctx.auth.cached(key)
            if cached is not None:
                self._authenticated(cached)  # (nginx's proxy_cache answers the subrequest)
                return
        facts = self._auth_facts()
        url = policy.url.expand(facts.values())
        sent = self.request.forward
        client_auth = location.client_auth
        if client_auth is not None:
            # the auth service gets the ssl-client-* headers as the pod does, never a client's
            sent = upstream_headers(client_auth, self.downstream.client_certificate()[1], sent)
        headers = subrequest_headers(
            policy, sent, facts, self.request_id.decode("latin-1"), urlsplit(url).hostname or ""
        )
        timeouts = location.upstream
        check = AuthCheck(url, policy.method or "GET", headers, timeouts.connect_timeout,
                          timeouts.read_timeout)  # fmt: skip
        state.task = self.ctx.auth.ask(check, self._authenticated, cache, key)

    def _authenticated(self, answer: AuthAnswer) -> None:
        state = self.auth
        assert state is not None
        state.task = None
        if self.finished:
            return  # (answered meanwhile: a body over the limit)
        policy = state.policy
        state.cookies = answer_lines(answer.headers, b"set-cookie")
        refused = refusal(answer.status)
        before = state.refused
        if refused and before > 0 and refused != 500:
            refused = 401 if 401 in {refused, before} else 403  # satisfy any: nginx's access_code
        if not refused:
            forwarded = state.forwarded
            if policy.response_headers:
                forward = forwarded_with(forwarded.forward, policy.response_headers, answer.headers)
                forwarded = forwarded.edited(forward)
            self._forward(forwarded)
        elif refused == 401 and policy.signin is not None:
            # error_page 401 = the sign-in location, whose answer is this 302
            location = signin_location(policy, self._auth_facts()).encode("latin-1")
            self._reply(302, partial(redirect_response, location, status=302))
        elif refused == 401:
            # nginx's auth_request passes the auth service's challenge on
            # (with satisfy any, auth_basic's challenge comes first)
            challenge = state.challenge + answer_lines(answer.headers, b"www-authenticate")
            self._reply(401, partial(_with_challenge, challenge))
        else:
            self._reply(refused, partial(error_response, refused))

    def _auth_facts(self) -> Facts:
        request = self.request
        return Facts(
            host=self._host(),
            http_host=request.host_header.decode("latin-1"),
            scheme="https" if self.downstream.tls else "http",
            request_uri=request.target.decode("latin-1"),
            method=request.method.decode("latin-1"),
            client=self.client.decode("latin-1"),
        )

    # -- basic authentication (docs/behaviour.md, "Basic authentication") ---------------------

    def _basic_auth(self, auth: BasicAuth, forwarded: h.Request, location: Route) -> None:
        """Forward the request if its credentials are an Ingress user's, else answer 401; a slow
        hash (bcrypt) is checked in a worker thread, not on the event loop."""
        header, count = authorization(self.request.forward)
        if count > 1:
            self.fail(BadRequest("more than one Authorization header"))  # as nginx, 400
            return
        decision, digest = self.ctx.verified.decide(auth, header)
        if decision == ALLOW:
            self._basic_passed(forwarded, location)
        elif decision == DENY or header is None:
            self._basic_refused(auth, forwarded, location)
        else:
            checked = self.ctx.loop.run_in_executor(None, check_password, auth, header)
            checked.add_done_callback(partial(self._checked, auth, forwarded, location, digest))

    def _checked(
        self,
        auth: BasicAuth,
        forwarded: h.Request,
        location: Route,
        digest: bytes,
        checked: asyncio.Future[bool],
    ) -> None:
        if self.finished:
            return  # the client went away meanwhile
        # (cancelled: the proxy is stopping; an error of the hash: no match, never a way in)
        if not checked.cancelled() and checked.exception() is None and checked.result():
            self.ctx.verified.remember(digest)
            self._basic_passed(forwarded, location)
        else:
            self._basic_refused(auth, forwarded, location)

    def _basic_passed(self, forwarded: h.Request, location: Route) -> None:
        forwarded = without_authorization(forwarded)
        if location.satisfy_any:
            self._forward(forwarded)  # one check let it through: enough
        else:
            self._authorized(forwarded, location)

    def _basic_refused(self, auth: BasicAuth, forwarded: h.Request, location: Route) -> None:
        if location.satisfy_any:
            self._any_external(forwarded, location, 401)
        else:
            self._reply(401, auth.answer)

    def _cors_preflight(self, lines: bytes) -> bool:
        """Note the CORS header lines of every answer, and answer an allowed preflight (an
        OPTIONS request) with 204 here; True when it was."""
        if not lines:
            return False  # not an allowed origin: no CORS headers, and OPTIONS goes upstream
        self.cors_lines = lines
        if self.request.method != b"OPTIONS":
            return False
        self._reply(204, preflight_response)
        return True

    def _canary_side(self, route: Route) -> Route:
        """The location's canary route when its cookies or policy send the request there
        (docs/ingress-nginx-compat.md, "Canaries"); else the main one."""
        canary, policy = route.canary, route.canary_policy
        assert canary is not None and policy is not None
        if takes_canary(route.cluster, canary.cluster, policy, self.request, self.ctx.rng):
            return canary
        return route

    # -- Gateway API routes (docs/gateway-api.md) -----------------------------------------------

    def _gateway(self) -> GatewayState:
        gateway = self.gateway
        if gateway is None:
            gateway = self.gateway = GatewayState()
        return gateway

    def _gateway_begin(self, route: Route, path: str) -> tuple[Route, h.Request] | None:
        """What an HTTPRoute rule does before the first try: pick its backend (by session or
        weight), answer a redirect or an unresolvable backend here (None), start the request
        timeout, and apply the filters to what the upstream is sent."""
        if route.split:
            route = self._backend_of(route)
        self.route = route  # (an answer given here is counted for this route)
        filters = route.filters
        redirect = None if filters is None else filters.redirect or filters.fixed_redirect
        if redirect is not None:
            self._redirect(redirect, path, route.path)
            return None
        if route.invalid_backend:
            self.fail(InvalidBackend())
            return None
        if route.response_deadline:
            self._gateway().deadline = self.ctx.loop.time() + route.response_deadline
        request = self.request
        if filters is not None:
            request = rewritten(request, filters, route.path)
        return route, request

    def _edited_response(
        self, route: Route, headers: list[tuple[bytes, bytes]]
    ) -> list[tuple[bytes, bytes]]:
        """The upstream's response headers after the rule's ResponseHeaderModifier, if any."""
        filters = route.filters
        if filters is not None and filters.response_headers is not None:
            return filters.response_headers.apply(headers)
        return headers

    def _backend_of(self, route: Route) -> Route:
        """The backend route of a rule: the one a valid session token names, else by weight."""
        session = route.session
        if session is not None:
            token = self._session_token(session)
            if token:
                self.cookie_value = token  # the session, for the metrics
                found = session.resolve(token, self.ctx.now())
                if found is not None:
                    self._gateway().pinned = found[1]
                    return route.session_backends[found[0]]
        return route.pick(self.ctx.rng)

    def _session_token(self, session: SessionPolicy) -> str | None:
        request = self.request
        if session.kind is SessionKind.COOKIE:
            return parse_cookie(request.cookie, session.name) if request.cookie else None
        wanted = session.header_key
        for name, value in request.forward:
            if name.lower() == wanted:
                return value.decode("latin-1")
        return None

    def _session_choice(self, route: Route, previous_failed: bool, now: float) -> Decision | None:
        """The pinned endpoint, unless a try on it failed; else a new session in this backend."""
        session = route.session
        assert session is not None
        pinned = self.gateway.pinned if self.gateway is not None else None
        if pinned is not None and not previous_failed:
            return Decision(pinned, None, Outcome.DRAINING if pinned.draining else Outcome.STICKY)
        ctx = self.ctx
        picked = route.cluster.balancer.choose(
            None, self.tried, False, False, ctx.rng, now, ctx.pid
        )
        if picked is None:
            return None
        if previous_failed:
            outcome = Outcome.FAILOVER
        else:
            outcome = Outcome.REPICKED if self.cookie_value else Outcome.NEW
        endpoint = picked.endpoint
        return Decision(endpoint, session.token(route.cluster.name, endpoint, now), outcome)

    def _instead_of_ejected(
        self, decision: Decision, route: Route, previous_failed: bool, now: float
    ) -> Decision:
        """Another endpoint for a try whose choice is ejected: a session stays on one
        substitute, without a new cookie unless change-on-failure asks for one; a fresh pick is
        drawn again. The ejected choice stands when nothing else is left (fail open). See
        docs/behaviour.md, "Outlier ejection"."""
        ctx = self.ctx
        cluster = route.cluster
        balancer = cluster.balancer
        avoid = ctx.ejections.avoiding(self.tried)
        session = route.session
        pinned = decision.new_key is None and decision.outcome is not None  # by cookie or token
        affinity = cluster.affinity
        change_on_failure = affinity is not None and affinity.cookie.change_on_failure
        if pinned and session is None and not change_on_failure:
            assert self.cookie_value is not None  # (a pinned decision comes from a cookie)
            endpoint = substitute(self.cookie_value, balancer.ready, avoid)
            return decision if endpoint is None else Decision(endpoint, None, Outcome.FAILOVER)
        cookie = None if pinned or session is not None else self.cookie_value
        picked = balancer.choose(
            cookie, avoid, previous_failed, change_on_failure, ctx.rng, now, ctx.pid
        )
        if picked is None:
            return decision
        outcome = Outcome.FAILOVER if pinned else decision.outcome
        if session is not None:  # a Gateway API session: a token for the new pick
            token = session.token(cluster.name, picked.endpoint, now)
            return Decision(picked.endpoint, token, outcome)
        return Decision(picked.endpoint, picked.new_key, outcome) if pinned else picked

    def _issue(self, session: SessionPolicy, token: str, now: float) -> None:
        """A new session's token goes to the client with the answer's head."""
        set_cookie = session.set_cookie(token, now, self.downstream.tls)
        if set_cookie is not None:
            self.set_cookie = set_cookie.encode("latin-1")
        else:
            header = b"%s: %s\r\n" % (session.name.encode(), token.encode())
            self._gateway().session_header = header

    def _connect(self, endpoint: Endpoint) -> None:
        assert self.route is not None
        upstream = self.route.upstream
        pool = self.ctx.pools.get(endpoint, upstream.tls)
        conn = pool.take_idle()
        if conn is not None:
            self._connected(conn)
        else:
            self.connecting = pool.connect(upstream.connect_timeout, self._on_connect)

    def _on_connect(self, conn: UpstreamConnection | None, error: UpstreamError | None) -> None:
        self.connecting = None
        if self.finished:
            if conn is not None:
                conn.release()  # fresh and unused: worth keeping for the next request
            return
        if conn is None:
            assert error is not None
            self._attempt_failed(error, sent=False)
        else:
            self._connected(conn)

    def _connected(self, conn: UpstreamConnection) -> None:
        self.upstream = conn
        self.sent_done = False
        conn.start(self, self.upstream_head_bytes, self.request.method == b"HEAD")
        if self.downstream.write_paused:  # the client is not keeping up: read from this one later
            conn.pause_reading(True)
        if self.body_sent and self.replay is not None:
            # A retry: replay what the failed try already sent, then what arrived since.
            for data in self.replay:
                conn.send(data)
        else:
            for data in self.pending:
                conn.send(data)
        if self.pending:
            self.body_sent = True
            self.pending = []
            self.pending_size = 0
            if not self.tunnel_pending:  # (those wait for a 101: nothing more is needed till then)
                self.downstream.hold_reading(WAIT_UPSTREAM, False)
        if self.request_done or self.error_code:
            self._request_sent()

    def _request_sent(self) -> None:
        if self.sent_done:
            return
        self.sent_done = True
        if self.request.chunked and not self.error_code:
            assert self.upstream is not None
            self.upstream.send(h.LAST_CHUNK)
        self._start_read_timer()

    # -- timers ---------------------------------------------------------------------------------

    def _start_read_timer(self) -> None:
        # No timer of its own: reads stamp `last_read` and the connection's one timer checks
        # `read_time_left` (a timer per request cost more than the rest of the bookkeeping).
        assert self.route is not None
        now = self.last_read = self.ctx.loop.time()
        self.awaiting_upstream = True
        wait = self.route.upstream.read_timeout
        gateway = self.gateway
        if gateway is not None and gateway.deadline:
            wait = min(wait, gateway.deadline - now)
        self.downstream.timer_within(wait, now)

    def read_time_left(self, now: float) -> float:
        assert self.route is not None
        left = self.last_read + self.route.upstream.read_timeout - now
        gateway = self.gateway
        if gateway is not None and gateway.deadline and not self.response_started:
            return min(left, gateway.deadline - now)
        return left

    def read_timed_out(self) -> None:
        gateway = self.gateway
        deadline = gateway.deadline if gateway is not None else 0.0
        if deadline and not self.response_started and self.ctx.loop.time() >= deadline:
            # The whole request's time is up: no retry could answer in time.
            error = UpstreamTimeout("request timed out")
            self._try_failed(error)
            self.fail(error)
            return
        self._upstream_broke(UpstreamTimeout("upstream read timed out"))

    def _stop_timers(self) -> None:
        self.awaiting_upstream = False
        if self.send_timer is not None:
            self.send_timer.cancel()
            self.send_timer = None

    # -- ResponseSink: from the upstream connection ---------------------------------------------

    def upstream_head(
        self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]], upgrade: bool
    ) -> None:
        self.last_read = self.ctx.loop.time()
        downstream = self.downstream
        request = self.request
        client_http11 = request.http11
        head_request = request.method == b"HEAD"
        if status < 200 and not upgrade:
            # Interim answers (100 Continue) go to HTTP/1.1 clients as they are; HTTP/1.0 has
            # none (RFC 9110 §15.2).
            if client_http11:
                interim, _ = h.response_head(status, reason, headers, False, True, True, None)
                downstream.write(interim)
            return
        extra = b""
        if upgrade:
            extra = b"Connection: upgrade\r\n"
            if request.upgrade is not None:
                extra += b"Upgrade: %s\r\n" % request.upgrade
        self.response_started = True
        self.status = status
        ejections = self.ctx.ejections
        if ejections.watched:
            assert self.endpoint is not None
            ejections.served(self.endpoint)
        if self.outcome is not None:
            assert self.tried_view is not None  # (set with the outcome, by the same try)
            self.ctx.metrics.answer_started(self.tried_view, self)
        route = self.route
        if route is not None and route.errors is not None and status in route.errors.intercepted:
            self._error_page(status, route.errors)  # proxy_intercept_errors
            return
        # An unread request body cannot be skipped: the connection closes after this answer.
        keep_alive = self.keep_alive and self.request_done and not self.ctx.closing
        if route is not None and route.response_edits is not None:
            # proxy_redirect, proxy_cookie_*: on the upstream's headers as nginx copies them,
            # before any header is added (docs/behaviour.md, "Location and cookie rewrites")
            scheme = b"https" if downstream.tls else b"http"
            origin = b"%s://%s" % (scheme, self._host().encode("latin-1"))
            headers = route.response_edits.applied(headers, origin)
        if route is not None and route.response_headers is not None:
            # custom-headers: replaced, as more_set_headers does
            # (docs/behaviour.md, "Custom response headers")
            headers = route.response_headers.replaced(headers)
            extra = route.response_headers.lines + extra
            if self.cors_lines:  # (a ConfigMap entry overrides a CORS header of its name)
                self.cors_lines = route.response_headers.strip(self.cors_lines)
        if self.cors_lines:
            # replaced, as headers-more's more_set_headers does (docs/behaviour.md, "CORS")
            headers = [pair for pair in headers if pair[0].lower() not in CORS_HEADERS]
            extra = self.cors_lines + extra
        if self.auth is not None:
            extra = self.auth.lines(status) + extra
        if route is not None and route.gateway_extras:
            headers = self._edited_response(route, headers)
            if self.gateway is not None:
                extra = self.gateway.session_header + extra  # (an upgrade's lines kept)
        head, framing = h.response_head(
            status, reason, headers, head_request, client_http11, keep_alive or upgrade,
            self.set_cookie, extra,
        )  # fmt: skip
        self.framing = framing
        if framing == h.Framing.CLOSE or not self.request_done:
            self.keep_alive = False  # without a length, the body ends at close
        downstream.write(head)
        self.sent_head = len(head)
        if upgrade:
            self._start_tunnel()
        elif route is not None and route.send_rate is not None:
            self.throttle = Throttle(self, self.ctx.loop, route.send_rate, len(head))

    def upstream_body(self, data: bytes) -> None:
        self.last_read = self.ctx.loop.time()
        self.sent_body += len(data)
        if self.framing == h.Framing.CHUNKED:
            data = h.chunk(data)
        if self.throttle is None:
            self.downstream.write(data)
        else:
            self.throttle.write(data)

    def upstream_done(self, upstream: UpstreamConnection, keep_alive: bool) -> None:
        self.upstream = None
        if keep_alive and self.sent_done and not self.tunnel:
            upstream.release()
        else:
            # Reused, a connection whose request was not sent whole would read the next
            # request's bytes as the rest of this one's body: never.
            upstream.close()
        if self.throttle is not None and not self.throttle.free:
            self.throttle.done = True  # the answer ends when the last bytes have gone
            return
        self.answer_done()

    def answer_done(self) -> None:
        """The whole answer has been written to the client."""
        if self.framing == h.Framing.CHUNKED:
            self.downstream.write(h.LAST_CHUNK)
        if self.tunnel:
            self.keep_alive = False
        self._finish()

    def upstream_failed(self, error: UpstreamError, response_started: bool) -> None:
        upstream = self.upstream
        # A reused keep-alive connection that dies before answering was most likely closed by
        # the upstream while idle.
        stale = (
            upstream is not None
            and upstream.reused
            and not response_started
            and error.reason == "reset"
        )
        self._upstream_broke(error, stale)

    def cork(self) -> None:
        self.downstream.cork()

    def uncork(self) -> None:
        self.downstream.uncork()

    def upstream_paused(self, paused: bool) -> None:
        """The upstream cannot take request body bytes as fast as the client sends them."""
        if paused:
            self.downstream.hold_reading(WAIT_UPSTREAM_WRITE, True)
            assert self.route is not None
            self.send_timer = self.ctx.loop.call_later(
                self.route.upstream.send_timeout, self._send_deadline
            )
        else:
            self.downstream.hold_reading(WAIT_UPSTREAM_WRITE, False)
            if self.send_timer is not None:
                self.send_timer.cancel()
                self.send_timer = None

    def _send_deadline(self) -> None:
        self.send_timer = None
        self._upstream_broke(UpstreamTimeout("upstream send timed out"))

    # -- failures and retries -------------------------------------------------------------------

    def _upstream_broke(self, error: UpstreamError, stale: bool = False) -> None:
        conn = self.upstream
        self.upstream = None
        if conn is not None:
            conn.close()
        if self.finished:
            return
        if self.response_started:
            # Part of the answer is already with the client: all that is left is to cut it short.
            self._try_failed(error)
            self.fail(error)
            return
        self._attempt_failed(error, sent=True, stale=stale)

    def _attempt_failed(self, error: UpstreamError, sent: bool, stale: bool = False) -> None:
        self._stop_timers()
        route = self.route
        assert route is not None and self.endpoint is not None
        replayable = not self.body_sent or self.replay is not None
        idempotent = self.request.method in IDEMPOTENT
        if stale and replayable and idempotent:
            # The upstream closed an idle keep-alive connection as we reused it: not the
            # endpoint's fault, so try it again on a fresh connection without spending a try.
            self._connect(self.endpoint)
            return
        self._try_failed(error)
        self.last_error = error
        policy = route.upstream
        kind = "timeout" if isinstance(error, UpstreamTimeout) else "error"
        may_retry = (
            kind in policy.next_upstream
            and (policy.next_upstream_tries == 0 or self.tries < policy.next_upstream_tries)
            and (
                policy.next_upstream_timeout == 0
                or perf_counter() - self.upstream_started_at < policy.next_upstream_timeout
            )
            and replayable
            and (not sent or idempotent or "non_idempotent" in policy.next_upstream)
            and self.request.upgrade is None
        )
        if may_retry:
            self.try_next(previous_failed=True)
        else:
            self.fail(error)

    def _try_failed(self, error: UpstreamError) -> None:
        """Count the failed try, and log it (at most a line per endpoint per second)."""
        route = self.route
        assert route is not None and self.endpoint is not None
        if route.upstream.eject_after_failures and error.reason in EJECTING_REASONS:
            self.ctx.ejections.failed(route.cluster.name, self.endpoint, route.upstream)
        self.ctx.metrics.count_upstream_error(error.reason)
        self.ctx.failure_log.failed(route.cluster.name, self.endpoint, error)

    def fail(self, error: ProxyError) -> None:
        """Answer with the error's status, unless an answer has already begun."""
        if self.finished:
            return
        self._stop_timers()
        if self.upstream is not None:
            self.upstream.close()
            self.upstream = None
        if self.response_started:
            self.keep_alive = False
            self.downstream.close_now()
            self._finish()
            return
        route = self.route
        if route is not None and route.errors is not None and error.status in route.errors.codes:
            self._error_page(error.status, route.errors)  # error_page applies to nginx's own too
            return
        self._reply(error.status, partial(error_response, error.status))

    def _error_page(self, status: int, pages: ErrorPages) -> None:
        """nginx's `error_page <status> = @custom_...`: the answer so far (and the connection
        it came on) is dropped and the default backend answers instead, whatever its status; or,
        without one, the built-in default backend's 404. The error backend's route has no
        error pages: nothing is intercepted twice (docs/behaviour.md, "Custom error pages")."""
        self._stop_timers()
        if self.connecting is not None:
            self.connecting.cancel()
            self.connecting = None
        if self.upstream is not None:
            self.upstream.close()
            self.upstream = None
        self.response_started = False
        self.cors_lines = b""  # (the named location adds none)
        self.set_cookie = None
        self.error_code = status
        backend = pages.backend
        if backend is None:
            self._reply(404, partial(error_response, 404))
            return
        self.route = backend
        self.tried = []
        self.tries = 0
        self.last_error = None
        self.cookie_value = self.new_cookie = None
        self.replay = None
        self.pending = []
        self.pending_size = 0
        self.body_sent = False
        self.downstream.hold_reading(WAIT_UPSTREAM, False)  # (the rest of the body is dropped)
        self.downstream.hold_reading(WAIT_UPSTREAM_WRITE, False)
        asked = error_request(self.request, status, pages.about)
        self.upstream_head_bytes = h.upstream_head(asked, self.via, self.request_id, self.client)
        self.try_next(previous_failed=False)

    def _redirect_to_https(self, route: Route) -> None:
        request = self.request
        target = request.target
        if target.endswith(b"/") and not route.keeps_trailing_slash:
            target = target[:-1]  # as ingress-nginx does, unless preserve-trailing-slash
        location = b"https://%s%s%s" % (
            self._host().encode("latin-1"),
            self.ctx.https_suffix,
            target,
        )
        self._reply(308, partial(redirect_response, location))

    def _redirect(self, redirect: Redirect | FixedRedirect, path: str, matched: str) -> None:
        request = self.request
        scheme = "https" if self.downstream.tls else "http"
        if isinstance(redirect, FixedRedirect):
            # an Ingress's: app-root names the Host as sent, port and all ($http_host)
            host = request.host_header.decode("latin-1") or self._host()
            port = self.via.local.rsplit(b":", 1)[-1].decode("latin-1")
            text = redirect.location(scheme, host, port, request.target.decode("latin-1"))
        else:
            query = request.target.partition(b"?")[2].decode("latin-1")
            text = redirect.location(scheme, self._host(), path, query, matched)
        location = text.encode("latin-1")
        status = redirect.status
        self._reply(status, partial(redirect_response, location, status=status))

    def _host(self) -> str:
        """The host a redirect names: the request's, else (HTTP/1.0 without Host) our own."""
        return self.request.host or self.via.local.rsplit(b":", 1)[0].decode("latin-1")

    def _reply(self, status: int, render: Callable[[bool], bytes]) -> None:
        """An answer of the proxy's own, rendered for whether the connection then closes: it
        does unless the request was read whole (an unread body cannot be skipped)."""
        self.status = status
        if not self.request_done or self.request.upgrade is not None:
            self.keep_alive = False
        answer = render(not self.keep_alive or self.ctx.closing)
        if self.cors_lines:
            answer = with_lines(answer, self.cors_lines)  # nginx adds them to its own answers too
        if self.auth is not None:
            cookies = self.auth.lines(status)
            if cookies:
                answer = with_lines(answer, cookies)
        route = self.route
        if route is not None and route.response_headers is not None and not self.error_code:
            answer = route.response_headers.on_own_answer(answer)  # (not to an error page's)
        if self.request.method == b"HEAD":
            # The same head, without the body it describes (RFC 9110 §9.3.2).
            answer = answer[: answer.index(b"\r\n\r\n") + 4]
        self.downstream.write(answer)
        self._finish()

    def _finish(self) -> None:
        if self.finished:
            return
        self.finished = True
        self._stop_timers()
        if self.throttle is not None:
            self.throttle.cancel()
        if self.limit_zone:
            self._release_connection()
        if self.ewma_started:
            assert self.endpoint is not None
            ctx = self.ctx
            ctx.loads.observe(self.endpoint, perf_counter() - self.ewma_started, ctx.now())
        self.ctx.metrics.finished(self)
        self.downstream.exchange_finished(self)

    # -- WebSocket and other upgrades -----------------------------------------------------------

    def _start_tunnel(self) -> None:
        self._stop_timers()
        self.tunnel = True
        upstream = self.upstream
        assert upstream is not None
        for data in self.tunnel_pending:
            upstream.send(data)
        self.tunnel_pending = []
        self.pending_size = 0
        self.downstream.start_tunnel(self)

    def tunnel_closed(self) -> None:
        """The client side of a tunnel closed: close the upstream side too."""
        if self.limit_zone:
            self._release_connection()  # (the upstream side no longer reports to this exchange)
        if self.upstream is not None:
            self.upstream.close()
            self.upstream = None


def _with_challenge(challenge: bytes, close: bool) -> bytes:
    """nginx's own 401 with the auth service's WWW-Authenticate lines."""
    answer = error_response(401, close)
    return with_lines(answer, challenge) if challenge else answer
