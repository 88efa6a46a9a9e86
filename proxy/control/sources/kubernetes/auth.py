"""What each request carries to prove who it is: an Authorization header and a TLS identity.

Credentials go stale while the proxy runs: the kubelet rotates service account tokens, exec
plugins hand out tokens that expire, a kubeconfig's tokenFile is rewritten. So a token file is
re-read every minute and after a 401, an exec credential is renewed when it expires and after a
401, as client-go does; several requests that fail together renew once.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from proxy.control.sources.kubernetes.config import ClusterAccess, KubeConfigError
from proxy.control.sources.kubernetes.exec_plugin import (
    CredentialError,
    ExecCredential,
    run_exec_plugin,
)
from proxy.system.cert_chain import load_cert_chain

TOKEN_MAX_AGE = 60.0  # seconds a token file is trusted before it is read again (client-go's)


@dataclass(frozen=True, slots=True)
class Auth:
    headers: dict[str, str]
    ssl: ssl.SSLContext
    generation: int  # which renewal these came from: a 401 on an old one needs no new renewal


def trust_context(access: ClusterAccess) -> ssl.SSLContext:
    """TLS trusting the cluster's CA (else the system's), or anything: insecure-skip-tls-verify."""
    try:
        if isinstance(access.ca, bytes):
            context = ssl.create_default_context(cadata=access.ca.decode("ascii", "replace"))
        else:
            context = ssl.create_default_context(cafile=access.ca)
    except (OSError, ssl.SSLError, ValueError) as error:
        raise KubeConfigError(f"{access.origin}: certificate-authority: {error}") from None
    if access.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class Credentials:
    def __init__(
        self,
        access: ClusterAccess,
        token_max_age: float = TOKEN_MAX_AGE,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),  # exec expiries
    ) -> None:
        self._access = access
        self._token_max_age = token_max_age
        self._clock = clock
        self._wall_clock = wall_clock
        self._lock = asyncio.Lock()
        self._generation = 0
        self._auth: Auth | None = None
        self._token_read_at = 0.0
        self._exec: ExecCredential | None = None
        self._static: ssl.SSLContext | None = None

    def static_context(self) -> ssl.SSLContext:
        """The TLS context with the kubeconfig's own client certificate; checked at startup so a
        missing file or a key that does not match is one line before anything listens."""
        if self._static is not None:
            return self._static
        context = trust_context(self._access)
        user = self._access.user
        if user.client_cert is not None and user.client_key is not None:
            try:
                load_cert_chain(context, user.client_cert, user.client_key)
            except (OSError, ssl.SSLError) as error:
                origin = self._access.origin
                raise KubeConfigError(f"{origin}: client certificate: {error}") from None
        self._static = context
        return context

    async def current(self) -> Auth:
        """Headers and TLS for the next request; CredentialError when none can be had."""
        async with self._lock:
            if self._auth is None or self._stale():
                self._auth = await self._renew()
            return self._auth

    async def renew_after_unauthorized(self, refused: Auth) -> None:
        """The server said 401 to `refused`: read the token again, run the plugin again."""
        async with self._lock:
            if self._auth is not None and self._auth.generation != refused.generation:
                return  # another request already renewed them
            self._exec = None
            self._auth = await self._renew()

    def _stale(self) -> bool:
        user = self._access.user
        if user.exec is not None:
            expires = self._exec.expires if self._exec is not None else None
            return self._exec is None or (expires is not None and self._wall_clock() >= expires)
        return user.token_file is not None and (
            self._clock() - self._token_read_at >= self._token_max_age
        )

    async def _renew(self) -> Auth:
        user = self._access.user
        token = user.token
        context = self._auth.ssl if self._auth is not None else None
        if user.token_file is not None:
            token = await asyncio.to_thread(_read_token, user.token_file)
            self._token_read_at = self._clock()
        if user.exec is not None:
            self._exec = await run_exec_plugin(user.exec, self._access)
            token = self._exec.token or token
            if self._exec.client_cert is not None and self._exec.client_key is not None:
                context = trust_context(self._access)
                try:
                    load_cert_chain(context, self._exec.client_cert, self._exec.client_key)
                except OSError as error:  # ssl.SSLError mostly: PEM that does not load
                    raise CredentialError(f"exec plugin: its certificate: {error}") from None
        self._generation += 1
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return Auth(headers, context or self.static_context(), self._generation)


def _read_token(path: Path) -> str:
    try:
        token = path.read_text().strip()
    except OSError as error:
        raise CredentialError(f"token file {path}: {error.strerror or error}") from None
    if not token:
        raise CredentialError(f"token file {path} is empty")
    return token
