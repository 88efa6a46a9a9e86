"""htpasswd files and their hashes, without I/O: the lines nginx's auth_basic reads, and known
vectors of each scheme as `htpasswd` (apache2-utils 2.4) and `openssl passwd` wrote them."""

from __future__ import annotations

import base64
import hashlib

import bcrypt
import pytest

from proxy.core.des_crypt import des_crypt
from proxy.core.htpasswd import (
    is_slow,
    known_scheme,
    md5_crypt,
    parse_htpasswd,
    sha_crypt,
    verify,
)

# "bar", hashed by the tools named
VECTORS = [
    "$apr1$0PEh1DDQ$71x2YO5y0c6WbY0gpn9go0",  # htpasswd -m
    "{SHA}Ys23Ag/5IOWqZCw9QGaVDdHwH00=",  # htpasswd -s
    "$2y$05$9u7JPHP7VEVppqLO1EeA0uwJk6n6KiOzEO06qJRwZt3.4MIc.5Q5a",  # htpasswd -B -C 5
    "$2y$10$2YiJz9LeJ7JwXphYk2BKsObbf2TgiHLi1wNL/W8FHvvQOX2qsAxN.",  # htpasswd -B -C 10
    "$5$rounds=1234$y32jRYelK4b02oUE$G7bIJTw.R.346kyp.McrEm4weQJK60VKDu1xqtT4khD",  # -2 -r 1234
    "$6$EUW2ekMA7DjXeHo4$sIscPKerqJOlsR2Vzz.NuX88/GHZWvTC1CuSmN9Wl43PFKIIGy7OCzBHuZrFr61hyhmDqXdni"
    "fa/CXiOwEOXE.",  # htpasswd -5
    "$1$abcdefgh$X4AQOXsoYNpzaat9Hm7iC/",  # openssl passwd -1
    "$5$abcdefgh$d7u6pMccLHaLEPpZjR0SAZPfuxqzifIjukzrxPp5Vk5",  # openssl passwd -5
    "{PLAIN}bar",
    "Hx2xch68q/8oc",  # htpasswd -d: DES crypt
]


@pytest.mark.parametrize("hashed", VECTORS)
def test_known_vectors_match_their_password_only(hashed: str) -> None:
    stored = hashed.encode()
    assert known_scheme(stored)
    assert verify(b"bar", stored)
    assert not verify(b"baz", stored)
    assert not verify(b"", stored)
    # nginx hands crypt a C string: a NUL ends the password, whatever the scheme
    assert verify(b"bar\0and more", stored)


def test_md5_crypt_apr1_with_a_short_salt() -> None:
    """openssl passwd -apr1 -salt x p"""
    assert md5_crypt(b"p", b"x", b"$apr1$") == b"$apr1$x$ya00XvwA0viq10Nb5bv6L."


def test_sha_crypt_with_rounds_a_long_password_and_an_odd_salt() -> None:
    """openssl passwd -5 -salt 'rounds=1234$xyz' (a password over one SHA-256 block)."""
    password = b"a long password of thirty-something bytes"
    expected = b"$5$rounds=1234$xyz$nd8vDvbI0yhZ2Xq0cLW0baHBAzc/RuNnsU.SxoH2cX1"
    assert sha_crypt(password, expected) == expected
    assert verify(password, expected)


def test_salted_sha1() -> None:
    """{SSHA}: base64 of SHA-1(password + salt) + salt (nginx checks it itself)."""
    salt = b"\x01\x02\x03\x04"
    stored = b"{SSHA}" + base64.b64encode(hashlib.sha1(b"bar" + salt).digest() + salt)
    assert verify(b"bar", stored)
    assert not verify(b"baz", stored)
    assert not verify(b"bar", b"{SSHA}not base64!")


def test_bcrypt_reads_72_bytes_of_a_password_as_crypt_does() -> None:
    long = b"x" * 72
    stored = bcrypt.hashpw(long, bcrypt.gensalt(4))
    assert verify(long + b"anything after", stored)  # the bcrypt package alone would refuse it


@pytest.mark.parametrize(
    "hashed",
    [
        "",
        "bar",  # plain text without {PLAIN}: nginx gives it to crypt(3), which reads it as DES
        "$y$j9T$salt$hash",  # yescrypt
        "$2b$04$short",  # a malformed bcrypt hash
    ],
)
def test_unknown_or_malformed_hashes_match_nothing(hashed: str) -> None:
    assert not verify(b"bar", hashed.encode())
    assert not verify(hashed.encode(), hashed.encode())


@pytest.mark.parametrize(
    ("password", "hashed"),
    [  # glibc's crypt(3)
        (b"password", b"abJnggxhB/yWI"),
        (b"", b"zz6dpSdr.LHZw"),
        (b"12345678", b"./qw5JW./79Vg"),  # only 8 bytes count
        (b"12345678extra", b"./qw5JW./79Vg"),
        (b"test", b"ZzNDgbTpgJhLM"),
    ],
)
def test_des_crypt(password: bytes, hashed: bytes) -> None:
    assert des_crypt(password, hashed[:2]) == hashed
    assert verify(password, hashed)
    assert not verify(password + b"!" if len(password) < 8 else b"x", hashed)


def test_slow_schemes() -> None:
    assert is_slow(VECTORS[2].encode()) and is_slow(VECTORS[5].encode())
    assert not is_slow(VECTORS[0].encode()) and not is_slow(b"{SHA}x")


def test_htpasswd_lines_as_nginx_reads_them() -> None:
    text = b"# comment\nfoo:{PLAIN}one:a comment\r\n\nno colon here\nbar:{PLAIN}two\nfoo:{PLAIN}x\n"
    assert parse_htpasswd(text) == ((b"foo", b"{PLAIN}one"), (b"bar", b"{PLAIN}two"))


def test_an_empty_file_has_no_users() -> None:
    assert parse_htpasswd(b"") == ()
    assert parse_htpasswd(b"foo:") == ((b"foo", b""),)
