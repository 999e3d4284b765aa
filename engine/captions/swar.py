"""Eight bytes at a time: word-wide bit tricks (SWAR) on UTF-8 caption bytes, for the scan's
kernel (engine.captions.kernel). A word is eight bytes loaded little-endian; per-byte results are
kept in the top bit of each byte. Internal to the kernel; imports numba.
"""

from __future__ import annotations

import sys

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

if sys.byteorder != "little":  # the loads below read a caption's bytes as little-endian words
    raise ImportError("the caption scan's kernel needs a little-endian CPU (x86-64, ARM64)")

_U0 = np.uint64(0)
_U1 = np.uint64(1)
ONES = np.uint64(0xFFFFFFFFFFFFFFFF)
HIGH = np.uint64(0x8080808080808080)  # the top bit of each byte of a word
_LOW7 = np.uint64(0x7F7F7F7F7F7F7F7F)
BIT6 = np.uint64(0x4040404040404040)  # set in letters, clear in digits
_CASE = np.uint64(0x2020202020202020)


@intrinsic
def load_word(typingctx, data, p):
    """Bytes ``data[p:p+8]`` as one little-endian uint64 (one unaligned load; no bounds check)."""
    def codegen(context, builder, signature, args):
        array = context.make_array(signature.args[0])(context, builder, args[0])
        address = builder.gep(array.data, [args[1]])
        return builder.load(builder.bitcast(address, ir.IntType(64).as_pointer()), align=1)
    return types.uint64(data, p), codegen


def _bytes_between(lo, hi):
    """SWAR constants: adding each to a word of bytes below 0x80 sets a byte's top bit if the
    byte is >= lo, resp. > hi; so the top bit of the XOR of both sums marks lo <= byte <= hi."""
    return np.uint64((0x80 - lo) * 0x0101010101010101), np.uint64((0x7F - hi) * 0x0101010101010101)


_DIGIT = _bytes_between(0x30, 0x39)
_LETTER = _bytes_between(0x61, 0x7A)  # after OR-ing 0x20 into each byte


@njit(cache=True, nogil=True, inline="always")
def token_bytes(w):
    """SWAR: the top bit of each byte of ``w`` set where the byte may be part of a token: an
    ASCII letter or digit, or any byte >= 0x80."""
    x = w & _LOW7
    y = x | _CASE
    return (((x + _DIGIT[0]) ^ (x + _DIGIT[1])) | ((y + _LETTER[0]) ^ (y + _LETTER[1])) | w) & HIGH


@njit(cache=True, nogil=True, inline="always")
def spans(data, start, end, bounds):
    """Runs of ``token_bytes`` in a caption, found eight bytes at a time without a branch per
    byte: each run's start and end go to ``bounds``, alternating. A run is a token if it is
    ASCII; otherwise it holds zero or more tokens. Returns (boundary count, top bits of all
    bytes: 0 for ASCII). Reads up to 7 bytes past ``end``."""
    n, prev, high = _U0, _U0, _U0
    for p in range(start, end, 8):
        w = load_word(data, p)
        if end - p < 8:  # bytes past the caption are separators
            w &= ONES >> np.uint64(64 - 8 * (end - p))
        high |= w
        token = token_bytes(w)
        flips = token ^ ((token << np.uint64(8)) | prev)  # byte k starts or ends a run
        prev = token >> np.uint64(56)
        for k in range(8):
            bounds[n] = p + k  # kept only where a flip counts it
            n += (flips >> np.uint64(8 * k + 7)) & _U1
    bounds[n] = end  # a run reaching the end of a caption of 8k bytes
    return np.int64(n + (prev >> np.uint64(7))), high & HIGH


@njit(cache=True, nogil=True, inline="always")
def lower_word(w, fold):
    """SWAR lower case of eight ASCII letters and digits with ``fold`` = BIT6 (letters have
    bit 6 set, digits not); ``w`` unchanged with ``fold`` = 0."""
    return w | ((w & fold) >> _U1)
