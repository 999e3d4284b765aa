"""``wds:PATTERN``: webdataset shards as img2dataset writes them, labels from each sample's JSON.

PATTERN is a shard path with globs and/or brace ranges (``shards/{00000..00009}.tar``,
``shards/*.tar``) or a directory of ``.tar`` files. Samples are consecutive members ``<key>.<ext>``;
the image member becomes a ``tar:`` reference (engine.faces.table.tar_reference) so embedding
can seek to it, and the JSON member's fields other than img2dataset's bookkeeping are the labels.
Nothing is unpickled. Skipped tar data, truncated members, corrupt JSON, samples without an image,
and samples img2dataset's ``NNNNN.parquet`` lists as successes but the tar lacks are recorded as
failures; the rest load.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import re
import tarfile
from pathlib import Path

import polars as pl

from engine.errors import InputError, require
from engine.faces.sources.common import (LoadedSource, SourceOptions, build_table, describe,
                                         failures_frame)
from engine.faces.sources.labels import canonicalise
from engine.faces.table import tar_reference

log = logging.getLogger(__name__)

BOOKKEEPING = frozenset({  # fields img2dataset writes about the download itself
    "url", "key", "status", "error_message", "width", "height", "original_width", "original_height",
    "exif", "sha256", "md5", "sha512", "caption", "bbox"})
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff", "gif")
GZIP_MAGIC = b"\x1f\x8b"
MEMBER_NAME = re.compile(r"^((?:.*/|)[^./]+)\.([^/]*)$")  # webdataset: key up to the first dot


def shard_paths(pattern: str) -> list[Path]:
    """The shards a pattern names, in order; InputError naming any that do not exist."""
    expanded = os.path.expanduser(pattern)
    if os.path.isdir(expanded):
        shards = sorted(Path(expanded).absolute().glob("*.tar"))
        if not shards:
            raise InputError(f"wds:{pattern}: the directory holds no .tar shards")
        return shards
    braceexpand = require("braceexpand", "webdataset shard patterns").braceexpand
    shards, missing = [], []
    for candidate in braceexpand(expanded):
        matches = sorted(glob.glob(candidate)) if any(c in candidate for c in "*?[") else (
            [candidate] if os.path.isfile(candidate) else [])
        shards += matches
        missing += [] if matches else [candidate]
    if missing:
        raise InputError(f"wds:{pattern}: no shard file(s) {missing[:5]}"
                         + (f" and {len(missing) - 5} more" if len(missing) > 5 else ""))
    return list(dict.fromkeys(Path(p).absolute() for p in shards))


def _block(size: int) -> int:
    return -(-size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE


def _read_member(tar: tarfile.TarFile, member: tarfile.TarInfo, sample: dict, ext: str, path: Path) -> None:
    if ext in IMAGE_EXTENSIONS and sample["image"] is None:
        sample["image"] = tar_reference(str(path), member.offset_data, member.size)
    elif ext == "json":
        try:
            labels = json.loads(tar.extractfile(member).read().decode("utf-8"))
            if not isinstance(labels, dict):
                raise ValueError(f"a JSON {type(labels).__name__}, not an object")
            sample["labels"] = labels
        except (ValueError, UnicodeDecodeError) as exc:
            sample["error"] = f"corrupt JSON member {member.name}: {exc}"


def _tail_is_clean(fh, offset: int) -> bool:
    """Whether everything after ``offset`` is tar end-of-archive padding (zero bytes)."""
    fh.seek(offset)
    while block := fh.read(1 << 16):
        if block.count(0) != len(block):
            return False
    return True


class ShardScan:
    """One pass over a tar: samples (key, image, labels, error) and failures that belong to no
    sample. After a corrupt header the scan resumes at the next readable header."""

    def __init__(self, path: Path):
        self.path = path
        self.samples: dict[str, dict] = {}
        self.failures: list[tuple[str, str, str]] = []
        self.expected = 0  # where the next header should start: the end of the last good member
        self.truncated = False

    def run(self) -> ShardScan:
        try:
            size = self.path.stat().st_size
            with open(self.path, "rb") as fh:
                if fh.read(2) == GZIP_MAGIC:
                    self._fail("compressed shard: decompress it (gunzip) so images can be read by seeking")
                    return self
                position = 0
                while position < size and not self.truncated:
                    fh.seek(position)
                    try:
                        with tarfile.TarFile(fileobj=fh, mode="r", ignore_zeros=True) as tar:
                            self._members(tar, size)
                        break
                    except tarfile.ReadError:  # a header after a pax/long-name header is corrupt
                        position = max(position, self.expected) + tarfile.BLOCKSIZE
                if self.expected < size and not self.truncated and not _tail_is_clean(fh, self.expected):
                    self._fail(f"unreadable tar data after byte {self.expected} (truncated or corrupt shard)")
        except OSError as exc:
            self._fail(f"unreadable tar: {exc}")
        return self

    def _fail(self, reason: str) -> None:
        self.failures.append((self.path.name, str(self.path), reason))

    def _members(self, tar: tarfile.TarFile, size: int) -> None:
        for member in tar:
            if member.offset != self.expected:
                self._fail(f"unreadable tar data skipped at bytes {self.expected}-{member.offset} "
                           "(corrupt member header)")
            self.expected = member.offset_data + _block(member.size)
            named = MEMBER_NAME.match(member.name)
            if not member.isfile() or named is None:
                continue
            sample = self.samples.setdefault(named[1], {"key": named[1], "image": None, "labels": None,
                                                        "error": None})
            if member.offset_data + member.size > size:
                sample["error"] = (f"truncated member {member.name}: {size - member.offset_data} of "
                                   f"{member.size} bytes")
                self.truncated = True
                return
            _read_member(tar, member, sample, named[2].rsplit(".", 1)[-1].lower(), self.path)


def listed_successes(path: Path) -> set[str] | None:
    """Keys img2dataset's per-shard parquet records as downloaded, if that file is beside the tar."""
    listing = path.with_suffix(".parquet")
    if not listing.is_file():
        return None
    try:
        frame = pl.read_parquet(listing, columns=["key", "status"])
    except Exception as exc:  # pyarrow/polars raise many types on a damaged file
        log.warning("%s: cannot cross-check against %s (%s)", path, listing.name, exc)
        return None
    return set(frame.filter(pl.col("status") == "success")["key"].cast(pl.Utf8).to_list())


def read_shard(path: Path) -> tuple[list[dict], list[tuple[str, str, str]]]:
    """Loadable samples (key, image, labels) of one shard, and failures."""
    scan = ShardScan(path).run()
    samples, failures = list(scan.samples.values()), scan.failures
    rows = []
    for sample in samples:
        reason = sample["error"] or (None if sample["image"] else "sample has no image member")
        if reason:
            failures.append((sample["key"], sample["image"] or str(path), reason))
        else:
            rows.append(sample)
    listed = listed_successes(path)
    for key in sorted((listed or set()) - {s["key"] for s in samples}):
        failures.append((key, str(path), f"absent from the tar though {path.with_suffix('.parquet').name} "
                         "lists it as downloaded (truncated or corrupt shard)"))
    return rows, failures


def label_frame(samples: list[dict]) -> pl.DataFrame:
    """The label fields of every sample's JSON as strings, one column per field."""
    names = list(dict.fromkeys(k for s in samples for k in (s["labels"] or {}) if k not in BOOKKEEPING))

    def text(value):
        if value is None or isinstance(value, str):
            return value
        return json.dumps(value) if isinstance(value, (list, dict)) else str(value)

    return pl.DataFrame({n: [text((s["labels"] or {}).get(n)) for s in samples] for n in names},
                        schema={n: pl.Utf8 for n in names})


def unique_keys(samples: list[dict]) -> list[str]:
    keys = [s["key"] for s in samples]
    if len(set(keys)) == len(keys):
        return keys
    log.warning("sample keys repeat across shards; keys are qualified as <shard>/<key>")
    return [f"{s['shard']}/{s['key']}" for s in samples]


def load(location: str, options: SourceOptions) -> LoadedSource:
    shards = shard_paths(location)
    samples, rejected = [], []
    common = os.path.commonpath([str(s.parent) for s in shards])
    for shard in shards:
        rows, failed = read_shard(shard)
        samples += [dict(r, shard=Path(os.path.relpath(shard, common)).as_posix()) for r in rows]
        rejected += failed
    unfinished = [s.name for s in shards if not s.with_name(f"{s.stem}_stats.json").exists()]
    if unfinished:
        log.warning("wds:%s: %d shard(s) have no _stats.json (img2dataset did not finish them)",
                    location, len(unfinished))
    base = pl.DataFrame({"key": unique_keys(samples), "image": [s["image"] for s in samples],
                         "shard": [s["shard"] for s in samples]},
                        schema={"key": pl.Utf8, "image": pl.Utf8, "shard": pl.Utf8})
    if samples and not any(s["labels"] for s in samples):
        log.warning("wds:%s: no sample has a JSON member; the faces carry no labels", location)
    failures = failures_frame(rejected)
    frame, attrs, modes = canonicalise(base, label_frame(samples), options.attributes,
                                       f"wds:{location}", options.label_map)
    faces = build_table("wds", frame, attrs, f"wds:{location}", failures)
    chosen = {"attributes": options.attributes, "label_map": options.label_map}
    label_files = [Path(options.label_map)] if options.label_map else []
    description = describe("wds", location, faces, failures, chosen, label_files,
                           shards=len(shards), shards_unfinished=unfinished, label_vocabulary=modes)
    return LoadedSource(faces=faces, failures=failures, description=description)
