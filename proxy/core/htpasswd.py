"""htpasswd files and the password hashes nginx's auth_basic accepts in them
(docs/behaviour.md, "Basic authentication").

nginx compares crypt(3)'s result for the stored hash with the stored hash; the schemes here are
the ones `htpasswd` writes and nginx (through its own code or the C library's crypt) checks:
bcrypt ($2a$, $2b$, $2y$), Apache's MD5 ($apr1$) and the C library's ($1$), SHA-256 and SHA-512
crypt ($5$, $6$), {SHA} and {SSHA} (base64 SHA-1), {PLAIN}, and the traditional DES crypt.
Any other hash (yescrypt) matches no password here. Pure: no I/O.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Callable
from typing import Final

import bcrypt

from proxy.core.des_crypt import des_crypt, is_des_hash

_ITOA64: Final = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_BCRYPT: Final = (b"$2a$", b"$2b$", b"$2y$")
_BCRYPT_MAX: Final = 72  # crypt(3) reads no more of a password; the bcrypt package refuses more
# SHA-crypt's rounds: the default, and the range a `rounds=` is clamped to (Drepper's spec)
_ROUNDS_DEFAULT: Final = 5000
_ROUNDS_MIN: Final = 1000
_ROUNDS_MAX: Final = 999_999_999


def parse_htpasswd(text: bytes) -> tuple[tuple[bytes, bytes], ...]:
    """(user, hash) of each `user:hash[:comment]` line, as nginx reads the file: lines starting
    with `#` and lines without a colon are skipped, CR before LF is dropped, and a user's first
    line is the one that counts."""
    entries: dict[bytes, bytes] = {}
    for raw in text.split(b"\n"):
        line = raw.rstrip(b"\r")
        if line.startswith(b"#") or b":" not in line:
            continue
        user, _, rest = line.partition(b":")
        entries.setdefault(user, rest.partition(b":")[0])
    return tuple(entries.items())


def known_scheme(hashed: bytes) -> bool:
    """Whether `hashed` is a hash this module can check (else it matches no password)."""
    return _checker(hashed) is not None


def is_slow(hashed: bytes) -> bool:
    """Whether checking a password against `hashed` costs more than a few milliseconds: bcrypt,
    SHA-crypt (5000 rounds by default, up to a billion) and DES crypt (in pure Python)."""
    return hashed.startswith((*_BCRYPT, b"$5$", b"$6$")) or is_des_hash(hashed)


def verify(password: bytes, hashed: bytes) -> bool:
    """Whether `password` matches the stored `hashed`, compared in constant time. As nginx
    passes the password to crypt as a C string, a NUL byte ends it."""
    check = _checker(hashed)
    return check is not None and check(password.partition(b"\0")[0], hashed)


def _checker(hashed: bytes) -> Callable[[bytes, bytes], bool] | None:
    if hashed.startswith(_BCRYPT):
        return _bcrypt
    if hashed.startswith((b"$apr1$", b"$1$")):
        return _md5
    if hashed.startswith((b"$5$", b"$6$")):
        return _sha
    if hashed.startswith(b"{SHA}"):
        return _sha1
    if hashed.startswith(b"{SSHA}"):
        return _salted_sha1
    if hashed.startswith(b"{PLAIN}"):
        return _plain
    if is_des_hash(hashed):
        return _des
    return None


def _same(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)


def _bcrypt(password: bytes, hashed: bytes) -> bool:
    try:
        return bcrypt.checkpw(password[:_BCRYPT_MAX], hashed)
    except ValueError:  # not a well-formed bcrypt hash
        return False


def _md5(password: bytes, hashed: bytes) -> bool:
    magic = b"$apr1$" if hashed.startswith(b"$apr1$") else b"$1$"
    salt = hashed[len(magic) :].partition(b"$")[0][:8]
    return _same(md5_crypt(password, salt, magic), hashed)


def _sha(password: bytes, hashed: bytes) -> bool:
    return _same(sha_crypt(password, hashed), hashed)


def _sha1(password: bytes, hashed: bytes) -> bool:
    return _same(b"{SHA}" + base64.b64encode(hashlib.sha1(password).digest()), hashed)


def _salted_sha1(password: bytes, hashed: bytes) -> bool:
    try:
        decoded = base64.b64decode(hashed[len(b"{SSHA}") :], validate=True)
    except binascii.Error:
        return False
    digest, salt = decoded[:20], decoded[20:]
    return len(digest) == 20 and _same(hashlib.sha1(password + salt).digest(), digest)


def _des(password: bytes, hashed: bytes) -> bool:
    return _same(des_crypt(password, hashed[:2]), hashed)


def _plain(password: bytes, hashed: bytes) -> bool:
    return _same(b"{PLAIN}" + password, hashed)


def _to64(value: int, count: int) -> bytes:
    out = bytearray()
    for _ in range(count):
        out.append(_ITOA64[value & 0x3F])
        value >>= 6
    return bytes(out)


def _encode(digest: bytes, groups: list[tuple[int, int, int]], tail: tuple[int, ...]) -> bytes:
    """crypt's base64: each group of three bytes (high to low) as four characters, then the
    bytes left over."""
    out = b"".join(_to64((digest[a] << 16) | (digest[b] << 8) | digest[c], 4) for a, b, c in groups)
    value = 0
    for index in tail:
        value = (value << 8) | digest[index]
    return out + _to64(value, len(tail) + 1)


def md5_crypt(password: bytes, salt: bytes, magic: bytes) -> bytes:
    """Poul-Henning Kamp's MD5 crypt, as `$1$` (the C library) and `$apr1$` (Apache) write it:
    the same algorithm with another magic string."""
    final = hashlib.md5(password + salt + password).digest()
    context = hashlib.md5(password + magic + salt)
    for left in range(len(password), 0, -16):
        context.update(final[: min(left, 16)])
    length = len(password)
    while length:
        context.update(b"\0" if length & 1 else password[:1])
        length >>= 1
    final = context.digest()
    for i in range(1000):
        step = hashlib.md5(password if i & 1 else final)
        if i % 3:
            step.update(salt)
        if i % 7:
            step.update(password)
        step.update(final if i & 1 else password)
        final = step.digest()
    groups = [(0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5)]
    return magic + salt + b"$" + _encode(final, groups, (11,))


def _repeated(block: bytes, length: int) -> bytes:
    return (block * (length // len(block) + 1))[:length]


def sha_crypt(password: bytes, setting: bytes) -> bytes:
    """Ulrich Drepper's SHA-256 (`$5$`) and SHA-512 (`$6$`) crypt of `password` with the salt and
    rounds of `setting` (a stored hash, or just its `$5$[rounds=N$]salt` part)."""
    magic = setting[:3]
    sha = hashlib.sha256 if magic == b"$5$" else hashlib.sha512
    rest = setting[3:]
    rounds, custom = _ROUNDS_DEFAULT, False
    if rest.startswith(b"rounds="):
        digits, _, after = rest[len(b"rounds=") :].partition(b"$")
        if digits.isdigit():
            rounds = min(max(int(digits), _ROUNDS_MIN), _ROUNDS_MAX)
            custom, rest = True, after
    salt = rest.partition(b"$")[0][:16]
    size = sha().digest_size
    alternate = sha(password + salt + password).digest()
    context = sha(password + salt)
    context.update(_repeated(alternate, len(password)))
    length = len(password)
    while length:
        context.update(alternate if length & 1 else password)
        length >>= 1
    result = context.digest()
    p_bytes = _repeated(sha(password * len(password)).digest(), len(password))
    s_bytes = _repeated(sha(salt * (16 + result[0])).digest(), len(salt))
    for i in range(rounds):
        step = sha(p_bytes if i & 1 else result)
        if i % 3:
            step.update(s_bytes)
        if i % 7:
            step.update(p_bytes)
        step.update(result if i & 1 else p_bytes)
        result = step.digest()
    third = size // 3  # 10 groups for SHA-256, 21 for SHA-512
    groups = []
    for k in range(third):
        a, b, c = k, k + third, k + 2 * third
        if size == 32:
            groups.append(((a, b, c), (c, a, b), (b, c, a))[k % 3])
        else:
            groups.append(((a, b, c), (b, c, a), (c, a, b))[k % 3])
    tail = (31, 30) if size == 32 else (63,)
    prefix = magic + (b"rounds=%d$" % rounds if custom else b"")
    return prefix + salt + b"$" + _encode(result, groups, tail)
