"""Compiled decoders for parquet pages of byte arrays (numba): PLAIN values, the RLE /
bit-packed hybrid (definition levels, dictionary indices), and copying values into an Arrow
string array's data buffer. Used by engine.captions.parquet_pages; no checks here that are
not stated, the caller validates sizes and indices.
"""

from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic


@intrinsic
def _memcpy(typingctx, dst, dst_start, src, src_start, count):
    """Copy ``count`` bytes from ``src[src_start:]`` to ``dst[dst_start:]`` (no bounds check)."""
    def codegen(context, builder, signature, args):
        target = context.make_array(signature.args[0])(context, builder, args[0])
        source = context.make_array(signature.args[2])(context, builder, args[2])
        cgutils.raw_memcpy(builder, builder.gep(target.data, [args[1]]),
                           builder.gep(source.data, [args[3]]), args[4], 1)
        return context.get_dummy_value()
    return types.void(dst, dst_start, src, src_start, count), codegen


@njit(cache=True, nogil=True, inline="always")
def _u32(raw, position):
    return (np.int64(raw[position]) | np.int64(raw[position + 1]) << 8
            | np.int64(raw[position + 2]) << 16 | np.int64(raw[position + 3]) << 24)


@njit(cache=True, nogil=True)
def plain_values(raw, position, n):
    """(start, length) of ``n`` PLAIN byte arrays (4-byte little-endian length, then bytes)
    from ``position``; the end position, or -1 if they run past the page."""
    starts = np.empty(n, np.int64)
    lengths = np.empty(n, np.int64)
    end = raw.shape[0]
    for i in range(n):
        if position + 4 > end:
            return starts, lengths, -1
        starts[i] = position + 4
        lengths[i] = _u32(raw, position)
        position += 4 + lengths[i]
        if position > end:
            return starts, lengths, -1
    return starts, lengths, position


@njit(cache=True, nogil=True)
def copy_plain(raw, position, valid, out, used, offsets):
    """Copy the PLAIN values of the valid rows to ``out[used:]``, setting ``offsets[1:]`` (one
    per row); return the bytes used, or -1 if the values run past the page or ``out``."""
    end = raw.shape[0]
    for i in range(valid.shape[0]):
        if valid[i]:
            if position + 4 > end:
                return -1
            length = _u32(raw, position)
            position += 4
            if position + length > end or used + length > out.shape[0]:
                return -1
            _memcpy(out, used, raw, position, length)
            position += length
            used += length
        offsets[i + 1] = used
    return used


@njit(cache=True, nogil=True)
def copy_dictionary(values, starts, lengths, indices, valid, out, used, offsets):
    """Copy the dictionary value of each valid row to ``out[used:]`` (room checked by the
    caller, indices in range), setting ``offsets[1:]``; return the bytes used."""
    k = 0
    for i in range(valid.shape[0]):
        if valid[i]:
            j = indices[k]
            k += 1
            _memcpy(out, used, values, starts[j], lengths[j])
            used += lengths[j]
        offsets[i + 1] = used
    return used


@njit(cache=True, nogil=True)
def rle_hybrid(raw, position, end, bit_width, out):
    """Decode parquet's RLE / bit-packed hybrid encoding of ``bit_width``-bit values from
    ``raw[position:end]`` into ``out``; return how many values were decoded (at most len(out))."""
    n, count = out.shape[0], 0
    value_bytes = (bit_width + 7) // 8
    mask = (np.uint64(1) << np.uint64(bit_width)) - np.uint64(1)
    while count < n and position < end:
        header, shift, complete = np.uint64(0), np.uint64(0), False
        while position < end and shift < np.uint64(35):  # run headers are 32-bit ULEB128
            byte = np.uint64(raw[position])
            position += 1
            header |= (byte & np.uint64(0x7F)) << shift
            shift += np.uint64(7)
            if byte < 0x80:
                complete = True
                break
        if not complete or header >= np.uint64(1 << 32):  # malformed
            return count
        if header & np.uint64(1):  # bit-packed: groups of 8 values, least significant bit first
            groups = np.int64(header >> np.uint64(1))
            stop = position + groups * bit_width  # groups < 2**31: no overflow
            if stop > end:
                return count
            bits, acc = np.uint64(0), np.uint64(0)
            for _ in range(min(groups * 8, n - count)):
                while bits < np.uint64(bit_width):
                    acc |= np.uint64(raw[position]) << bits
                    position += 1
                    bits += np.uint64(8)
                out[count] = acc & mask
                count += 1
                acc >>= np.uint64(bit_width)
                bits -= np.uint64(bit_width)
            position = stop
        else:  # a run of one value
            run = np.int64(header >> np.uint64(1))
            if position + value_bytes > end:
                return count
            value = np.uint64(0)
            for k in range(value_bytes):
                value |= np.uint64(raw[position + k]) << np.uint64(8 * k)
            position += value_bytes
            for _ in range(min(run, n - count)):
                out[count] = value
                count += 1
    return count
