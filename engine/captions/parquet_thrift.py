"""Thrift's compact protocol, just enough to read parquet page headers (parquet.thrift).

``read_struct`` returns a struct's integer, boolean and nested-struct fields by field id and
skips the others (binary statistics, lists, maps), so headers written with fields this module
does not know still parse.
"""

from __future__ import annotations

def _varint(data, position: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, position
        shift += 7


def read_struct(data, position: int) -> tuple[dict, int]:
    """Fields of a struct: integers, booleans and nested structs by field id; others skipped."""
    fields, field_id = {}, 0
    while True:
        byte = data[position]
        position += 1
        if byte == 0:
            return fields, position
        kind, delta = byte & 0x0F, byte >> 4
        if delta:
            field_id += delta
        else:
            raw, position = _varint(data, position)
            field_id = (raw >> 1) ^ -(raw & 1)
        if kind in (1, 2):
            fields[field_id] = kind == 1
        elif kind in (3, 4, 5, 6):
            if kind == 3:
                raw, position = data[position], position + 1
            else:
                raw, position = _varint(data, position)
            fields[field_id] = (raw >> 1) ^ -(raw & 1) if kind != 3 else raw
        elif kind == 12:
            fields[field_id], position = read_struct(data, position)
        else:
            position = _skip(data, position, kind)


def _skip(data, position: int, kind: int) -> int:
    """Position after a value of compact type ``kind`` (in a list, booleans take a byte)."""
    if kind in (1, 2, 3):
        return position + 1
    if kind in (4, 5, 6):
        return _varint(data, position)[1]
    if kind == 7:
        return position + 8
    if kind == 8:
        size, position = _varint(data, position)
        return position + size
    if kind in (9, 10):
        byte = data[position]
        position += 1
        size = byte >> 4
        if size == 15:
            size, position = _varint(data, position)
        for _ in range(size):
            position = _skip(data, position, byte & 0x0F)
        return position
    if kind == 11:
        size, position = _varint(data, position)
        if size:
            kinds, position = data[position], position + 1
            for _ in range(size):
                position = _skip(data, _skip(data, position, kinds >> 4), kinds & 0x0F)
        return position
    if kind == 12:
        return read_struct(data, position)[1]
    raise ValueError(f"unknown Thrift compact type {kind}")
