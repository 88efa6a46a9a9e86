"""The traditional Unix crypt(3): 25 rounds of DES with a salted expansion, as `htpasswd -d`
writes it and nginx's auth_basic checks it through the C library
(docs/behaviour.md, "Basic authentication"). The tables are FIPS 46-3's, one-based as printed
there. Pure: no I/O.

Bits are kept as lists of 0 and 1 (most significant first): slow next to C, about 10 ms a
password here, which is why a DES hash is checked off the event loop like bcrypt.
"""

from __future__ import annotations

from typing import Final

_ITOA64: Final = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

_IP: Final = (
    58, 50, 42, 34, 26, 18, 10, 2, 60, 52, 44, 36, 28, 20, 12, 4,
    62, 54, 46, 38, 30, 22, 14, 6, 64, 56, 48, 40, 32, 24, 16, 8,
    57, 49, 41, 33, 25, 17, 9, 1, 59, 51, 43, 35, 27, 19, 11, 3,
    61, 53, 45, 37, 29, 21, 13, 5, 63, 55, 47, 39, 31, 23, 15, 7,
)  # fmt: skip
_FP: Final = tuple(_IP.index(position) + 1 for position in range(1, 65))  # IP's inverse
# the expansion: each 4-bit group with the bit before and after it
_E: Final = tuple((4 * group + offset - 1) % 32 + 1 for group in range(8) for offset in range(6))
_P: Final = (
    16, 7, 20, 21, 29, 12, 28, 17, 1, 15, 23, 26, 5, 18, 31, 10,
    2, 8, 24, 14, 32, 27, 3, 9, 19, 13, 30, 6, 22, 11, 4, 25,
)  # fmt: skip
_PC1: Final = (
    57, 49, 41, 33, 25, 17, 9, 1, 58, 50, 42, 34, 26, 18,
    10, 2, 59, 51, 43, 35, 27, 19, 11, 3, 60, 52, 44, 36,
    63, 55, 47, 39, 31, 23, 15, 7, 62, 54, 46, 38, 30, 22,
    14, 6, 61, 53, 45, 37, 29, 21, 13, 5, 28, 20, 12, 4,
)  # fmt: skip
_PC2: Final = (
    14, 17, 11, 24, 1, 5, 3, 28, 15, 6, 21, 10, 23, 19, 12, 4,
    26, 8, 16, 7, 27, 20, 13, 2, 41, 52, 31, 37, 47, 55, 30, 40,
    51, 45, 33, 48, 44, 49, 39, 56, 34, 53, 46, 42, 50, 36, 29, 32,
)  # fmt: skip
_SHIFTS: Final = (1, 1, 2, 2, 2, 2, 2, 2, 1, 2, 2, 2, 2, 2, 2, 1)
_S: Final = (
    (14, 4, 13, 1, 2, 15, 11, 8, 3, 10, 6, 12, 5, 9, 0, 7,
     0, 15, 7, 4, 14, 2, 13, 1, 10, 6, 12, 11, 9, 5, 3, 8,
     4, 1, 14, 8, 13, 6, 2, 11, 15, 12, 9, 7, 3, 10, 5, 0,
     15, 12, 8, 2, 4, 9, 1, 7, 5, 11, 3, 14, 10, 0, 6, 13),
    (15, 1, 8, 14, 6, 11, 3, 4, 9, 7, 2, 13, 12, 0, 5, 10,
     3, 13, 4, 7, 15, 2, 8, 14, 12, 0, 1, 10, 6, 9, 11, 5,
     0, 14, 7, 11, 10, 4, 13, 1, 5, 8, 12, 6, 9, 3, 2, 15,
     13, 8, 10, 1, 3, 15, 4, 2, 11, 6, 7, 12, 0, 5, 14, 9),
    (10, 0, 9, 14, 6, 3, 15, 5, 1, 13, 12, 7, 11, 4, 2, 8,
     13, 7, 0, 9, 3, 4, 6, 10, 2, 8, 5, 14, 12, 11, 15, 1,
     13, 6, 4, 9, 8, 15, 3, 0, 11, 1, 2, 12, 5, 10, 14, 7,
     1, 10, 13, 0, 6, 9, 8, 7, 4, 15, 14, 3, 11, 5, 2, 12),
    (7, 13, 14, 3, 0, 6, 9, 10, 1, 2, 8, 5, 11, 12, 4, 15,
     13, 8, 11, 5, 6, 15, 0, 3, 4, 7, 2, 12, 1, 10, 14, 9,
     10, 6, 9, 0, 12, 11, 7, 13, 15, 1, 3, 14, 5, 2, 8, 4,
     3, 15, 0, 6, 10, 1, 13, 8, 9, 4, 5, 11, 12, 7, 2, 14),
    (2, 12, 4, 1, 7, 10, 11, 6, 8, 5, 3, 15, 13, 0, 14, 9,
     14, 11, 2, 12, 4, 7, 13, 1, 5, 0, 15, 10, 3, 9, 8, 6,
     4, 2, 1, 11, 10, 13, 7, 8, 15, 9, 12, 5, 6, 3, 0, 14,
     11, 8, 12, 7, 1, 14, 2, 13, 6, 15, 0, 9, 10, 4, 5, 3),
    (12, 1, 10, 15, 9, 2, 6, 8, 0, 13, 3, 4, 14, 7, 5, 11,
     10, 15, 4, 2, 7, 12, 9, 5, 6, 1, 13, 14, 0, 11, 3, 8,
     9, 14, 15, 5, 2, 8, 12, 3, 7, 0, 4, 10, 1, 13, 11, 6,
     4, 3, 2, 12, 9, 5, 15, 10, 11, 14, 1, 7, 6, 0, 8, 13),
    (4, 11, 2, 14, 15, 0, 8, 13, 3, 12, 9, 7, 5, 10, 6, 1,
     13, 0, 11, 7, 4, 9, 1, 10, 14, 3, 5, 12, 2, 15, 8, 6,
     1, 4, 11, 13, 12, 3, 7, 14, 10, 15, 6, 8, 0, 5, 9, 2,
     6, 11, 13, 8, 1, 4, 10, 7, 9, 5, 0, 15, 14, 2, 3, 12),
    (13, 2, 8, 4, 6, 15, 11, 1, 10, 9, 3, 14, 5, 0, 12, 7,
     1, 15, 13, 8, 10, 3, 7, 4, 12, 5, 6, 11, 0, 14, 9, 2,
     7, 11, 4, 1, 9, 12, 14, 2, 0, 6, 10, 13, 15, 3, 5, 8,
     2, 1, 14, 7, 4, 10, 8, 13, 15, 12, 9, 0, 3, 5, 6, 11),
)  # fmt: skip


def is_des_hash(hashed: bytes) -> bool:
    """13 characters of crypt's alphabet: two of salt, eleven of hash."""
    return len(hashed) == 13 and all(chr(c) in _ITOA64 for c in hashed)


def des_crypt(password: bytes, salt: bytes) -> bytes:
    """crypt(3) of `password` (its first 8 bytes, 7 bits each) with a 2-character `salt`."""
    key = [(byte << 1) & 0xFF for byte in password[:8].ljust(8, b"\0")]
    subkeys = _subkeys([bit for byte in key for bit in _bits(byte, 8)])
    salt_value = _ITOA64.index(chr(salt[0])) | _ITOA64.index(chr(salt[1])) << 6
    # a set salt bit i swaps bits i and i + 24 of the expansion
    expansion = list(_E)
    for i in range(12):
        if salt_value >> i & 1:
            expansion[i], expansion[i + 24] = expansion[i + 24], expansion[i]
    block = [0] * 64
    for _ in range(25):
        block = _des(block, subkeys, expansion)
    bits = [*block, 0, 0]
    text = "".join(_ITOA64[int("".join(map(str, bits[i : i + 6])), 2)] for i in range(0, 66, 6))
    return salt[:2] + text.encode()


def _bits(value: int, count: int) -> list[int]:
    return [value >> (count - 1 - i) & 1 for i in range(count)]


def _subkeys(key: list[int]) -> list[list[int]]:
    permuted = [key[p - 1] for p in _PC1]
    left, right = permuted[:28], permuted[28:]
    keys = []
    for shift in _SHIFTS:
        left, right = left[shift:] + left[:shift], right[shift:] + right[:shift]
        both = left + right
        keys.append([both[p - 1] for p in _PC2])
    return keys


def _des(block: list[int], subkeys: list[list[int]], expansion: list[int]) -> list[int]:
    permuted = [block[p - 1] for p in _IP]
    left, right = permuted[:32], permuted[32:]
    for subkey in subkeys:
        mixed = [right[p - 1] ^ k for p, k in zip(expansion, subkey, strict=True)]
        out: list[int] = []
        for box in range(8):
            six = mixed[6 * box : 6 * box + 6]
            row = six[0] << 1 | six[5]
            column = six[1] << 3 | six[2] << 2 | six[3] << 1 | six[4]
            out.extend(_bits(_S[box][16 * row + column], 4))
        function = [out[p - 1] for p in _P]
        left, right = right, [a ^ b for a, b in zip(left, function, strict=True)]
    joined = right + left  # the last round's halves are not swapped
    return [joined[p - 1] for p in _FP]
