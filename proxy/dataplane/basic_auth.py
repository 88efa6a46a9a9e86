"""Per-process memory of the credentials basic authentication verified
(docs/behaviour.md, "Basic authentication"): a client sends the same Authorization header with
every request, and bcrypt costs ~80 ms a check at cost 10, so a verified one is remembered.

Only digests are kept: BLAKE2b of the stored hash and the header, never a password. The stored
hash is part of the key, so a changed Secret (or another Ingress's users) never matches an old
entry. Failures are not remembered: they cost the client (and an attacker) each time.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Final

from proxy.core.basic_auth import BasicAuth, credentials
from proxy.core.htpasswd import is_slow, verify

CACHE_SIZE: Final = 4096  # credentials, least recently used first out; ~100 bytes each

# What `Verified.decide` says about a request's credentials
ALLOW: Final = 0
DENY: Final = 1
CHECK: Final = 2  # a slow hash: `check` it off the event loop, then `remember` a success


class Verified:
    """The credentials this process verified, by digest; bounded, least recently used out."""

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self._size = size
        self._digests: OrderedDict[bytes, None] = OrderedDict()

    def decide(self, auth: BasicAuth, header: bytes | None) -> tuple[int, bytes]:
        """ALLOW, DENY, or CHECK (with the digest to `remember` when `check` says yes)."""
        if header is None:
            return DENY, b""
        found = credentials(header)
        if found is None:
            return DENY, b""
        stored = auth.stored(found[0])
        if stored is None:
            return DENY, b""
        digest = hashlib.blake2b(stored + b"\0" + header, digest_size=20).digest()
        if digest in self._digests:
            self._digests.move_to_end(digest)
            return ALLOW, digest
        if is_slow(stored):
            return CHECK, digest
        if verify(found[1], stored):
            self.remember(digest)
            return ALLOW, digest
        return DENY, b""

    def remember(self, digest: bytes) -> None:
        self._digests[digest] = None
        if len(self._digests) > self._size:
            self._digests.popitem(last=False)


def check(auth: BasicAuth, header: bytes) -> bool:
    """The slow check of `decide`'s CHECK: safe in a worker thread (reads only immutable data;
    bcrypt releases the GIL while it hashes)."""
    found = credentials(header)
    if found is None:
        return False
    stored = auth.stored(found[0])
    return stored is not None and verify(found[1], stored)
