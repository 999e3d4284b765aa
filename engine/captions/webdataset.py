"""Webdataset tars as img2dataset writes them: samples, their captions, and truncation.

Samples are consecutive members ``<key>.<ext>`` (the key is the member name up to its first
dot); members are read with ``TarFile.extractfile`` only when needed (captions), never
extracted, and nothing is unpickled.
"""

from __future__ import annotations

import json
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path


def check_tar_end(tar: tarfile.TarFile, path: Path) -> None:
    """Refuse a truncated tar: after the last member, tarfile stops silently at a cut, so the
    end-of-archive marker (two zero blocks) must be there."""
    members = tar.getmembers()
    end = 0
    if members:
        last = members[-1]
        end = last.offset_data + -(-last.size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE
    size = os.path.getsize(path)
    with open(path, "rb") as fh:
        fh.seek(end)
        tail = fh.read()
    if size < end or len(tail) < 2 * tarfile.BLOCKSIZE or tail.strip(b"\0"):
        raise ValueError(f"truncated tar {path}: it ends at byte {size} without the end-of-archive "
                         f"marker after its last member (which ends at byte {end})")


def tar_samples(tar: tarfile.TarFile) -> Iterator[tuple[str, dict[str, tarfile.TarInfo]]]:
    """(key, {extension: member}) per sample: consecutive members sharing the key (webdataset)."""
    key, members = None, {}
    for member in tar:
        if not member.isfile():
            continue
        directory, _, name = member.name.rpartition("/")
        stem, dot, ext = name.partition(".")
        if not dot:
            continue
        member_key = f"{directory}/{stem}" if directory else stem
        if member_key != key and members:
            yield key, members
            members = {}
        key = member_key
        members.setdefault(ext.lower(), member)
    if members:
        yield key, members


def sample_caption(tar: tarfile.TarFile, members: dict) -> tuple[str | None, str]:
    """(caption, "") of a sample, or (None, reason): the txt member, else json["caption"]."""
    try:
        if "txt" in members:
            return tar.extractfile(members["txt"]).read().decode("utf-8"), ""
        if "json" in members:
            record = json.loads(tar.extractfile(members["json"]).read().decode("utf-8"))
            caption = record.get("caption") if isinstance(record, dict) else None
            return (caption, "") if isinstance(caption, str) else (None, "json without caption")
    except UnicodeDecodeError:
        return None, "caption member is not UTF-8"
    except json.JSONDecodeError:
        return None, "corrupt json member"
    return None, "no txt or json member"
