"""``vlaudit subset``: the captions behind a finding, as img2dataset input (and its download).

Selects the captions of a scan database that contain a taxonomy word (and, optionally, a group
term of one variant), reads their URLs, captions and keys back from the source files (the scan
keeps none of them, to stay fast), and writes a parquet with ``url`` and ``caption`` first — the layout
img2dataset reads — plus ``source_key`` (the caption's key in its source), ``source`` and
``row``. ``download`` runs img2dataset on it with webdataset output, so the images can be
indexed and audited with the face tools.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from engine import storage
from engine.captions import store
from engine.captions.charclass import token_text
from engine.captions.shards import column_names
from engine.captions.webdataset import tar_samples
from engine.errors import InputError

log = logging.getLogger(__name__)

VARIANTS = ("unambiguous", "with_ambiguous")


@dataclass(frozen=True)
class SubsetConfig:
    db: str
    word: str
    out: str
    group: str | None = None  # "female" or "gender/female"
    variant: str = "unambiguous"
    download: str | None = None  # img2dataset output folder
    image_size: int = 256
    processes: int = 1
    threads: int = 16

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise InputError(f"unknown variant {self.variant!r}; choose one of {list(VARIANTS)}")
        if not self.word.strip():
            raise InputError("--word is empty")
        if self.image_size < 1 or self.processes < 1 or self.threads < 1:
            raise InputError("--image-size, --processes and --threads must be positive")


def run_subset(config: SubsetConfig) -> dict:
    """Write the URL list (and download it); return counts."""
    con = store.connect(config.db, read_only=True)
    try:
        word_id, word = resolve_word(con, config.word)
        group_id = resolve_group(con, config.group, config.variant) if config.group else None
        rows = select_captions(con, word_id, group_id)
    finally:
        con.close()
    with_urls = attach_urls(rows)
    table = with_urls.filter(pl.col("url").is_not_null()).unique("url", keep="first", maintain_order=True)
    table = table.rename({"key": "source_key"})  # img2dataset reserves "key" for its own
    storage.write_parquet(config.out, table.select("url", "caption", "source_key", "source", "row"))
    result = {"word": word, "group": config.group, "variant": config.variant, "out": config.out,
              "captions": rows.height, "without_url": with_urls["url"].null_count(),
              "duplicate_urls": with_urls["url"].drop_nulls().len() - table.height,
              "urls": table.height}
    if config.download:
        result["download"] = download(config, table.height)
    return result


def resolve_word(con, text: str) -> tuple[int, str]:
    """The word term whose surface form the text is (case-insensitive; plural forms work too)."""
    form = " ".join(token_text(text))
    found = con.execute(
        "SELECT DISTINCT t.term_id, t.word FROM forms f JOIN form_terms ft USING (form_id) "
        "JOIN terms t USING (term_id) WHERE f.form = ? AND t.kind = 'word' ORDER BY t.term_id",
        [form]).fetchall()
    if not found:
        import difflib

        words = [w for (w,) in con.execute("SELECT word FROM terms WHERE kind = 'word'").fetchall()]
        close = difflib.get_close_matches(text, words, n=5)
        raise InputError(f"{text!r} is not a word of the scanned taxonomy"
                         + (f"; did you mean {', '.join(close)}?" if close else ""))
    return found[0]


def resolve_group(con, text: str, variant: str) -> int:
    """A group term id from ``group`` or ``axis/group``."""
    axis, _, group = text.strip().lower().rpartition("/")
    found = con.execute(
        "SELECT term_id, axis FROM terms WHERE kind = 'group' AND \"group\" = ? AND variant = ? "
        "AND (? = '' OR axis = ?)", [group, variant, axis, axis]).fetchall()
    if len(found) == 1:
        return found[0][0]
    if len(found) > 1:
        raise InputError(f"group {text!r} exists on several axes ({', '.join(a for _, a in found)}); "
                         "write it as axis/group")
    groups = con.execute("SELECT DISTINCT axis || '/' || \"group\" FROM terms WHERE kind = 'group' "
                         "ORDER BY 1").fetchall()
    raise InputError(f"unknown group {text!r}; the lexicon has {', '.join(g for (g,) in groups)}")


def select_captions(con, word_id: int, group_id: int | None) -> pl.DataFrame:
    arrow = con.sql(
        'SELECT s.path AS source, s.kind, s.size, s.mtime_ns, c."row" '
        "FROM captions c JOIN shards s USING (shard_id) WHERE s.status = 'done' "
        "AND list_contains(c.term_ids, ?) AND (? IS NULL OR list_contains(c.term_ids, ?)) "
        'ORDER BY s.path, c."row"', params=[word_id, group_id, group_id]).to_arrow_table()
    return pl.from_arrow(arrow)


def attach_urls(rows: pl.DataFrame) -> pl.DataFrame:
    """Add ``url``, ``caption`` and ``key`` (the row number where the source has no keys), read
    back from each source file (which must not have changed since the scan: rows are positions
    in it)."""
    parts = []
    for (source, kind, size, mtime_ns), part in rows.group_by(
            "source", "kind", "size", "mtime_ns", maintain_order=True):
        _check_unchanged(source, size, mtime_ns)
        urls, captions, keys = READ_BACK[kind](Path(source), part["row"].to_list())
        parts.append(part.with_columns(url=pl.Series(urls, dtype=pl.Utf8), caption=pl.Series(captions, dtype=pl.Utf8),
                                       key=pl.Series(keys, dtype=pl.Utf8)))
    if not parts:
        return rows.with_columns(url=pl.lit(None, dtype=pl.Utf8), caption=pl.lit(None, dtype=pl.Utf8),
                                 key=pl.lit(None, dtype=pl.Utf8))
    return pl.concat(parts).with_columns(key=pl.coalesce("key", pl.col("row").cast(pl.Utf8)))


def _check_unchanged(source: str, size: int, mtime_ns: int) -> None:
    try:
        st = os.stat(source)
    except OSError as exc:
        raise InputError(f"{source} is gone since it was scanned ({exc.strerror}); the URLs and "
                         "captions of a subset are read from it") from exc
    if (st.st_size, st.st_mtime_ns) != (size, mtime_ns):
        raise InputError(f"{source} changed since it was scanned; scan it again first")


def _parquet_rows(path: Path, rows: list[int]) -> tuple[list, list, list]:
    """(urls, captions, keys) of the rows; None where the file has no such column."""
    parquet = pq.ParquetFile(path)
    names = column_names(parquet.schema_arrow, path)
    wanted = [names[name] for name in ("url", "caption", "key")]
    table = parquet.read(columns=[c for c in wanted if c]).take(pa.array(rows, pa.int64()))
    urls, captions, keys = (table.column(c).cast(pa.string()).to_pylist() if c else [None] * len(rows) for c in wanted)
    return urls, captions, keys


def _tar_rows(path: Path, rows: list[int]) -> tuple[list, list, list]:
    import tarfile

    from engine.captions.webdataset import sample_caption

    wanted, found = set(rows), {}
    with tarfile.open(path, "r:") as tar:
        for row, (key, members) in enumerate(tar_samples(tar)):
            if row in wanted:
                found[row] = (_json_field(tar, members, "url"), sample_caption(tar, members)[0], key)
    samples = [found.get(r, (None, None, None)) for r in rows]
    return [s[0] for s in samples], [s[1] for s in samples], [s[2] for s in samples]


def _json_field(tar, members: dict, field: str):
    import json

    if "json" not in members:
        return None
    try:
        record = json.loads(tar.extractfile(members["json"]).read().decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None
    return record.get(field) if isinstance(record, dict) else None


def _text_rows(path: Path, rows: list[int]) -> tuple[list, list, list]:
    wanted, found = set(rows), {}
    with open(path, encoding="utf-8", newline="\n") as fh:
        for line_no, line in enumerate(fh):
            if line_no in wanted:
                found[line_no] = line.rstrip("\n").rstrip("\r")
    return [None] * len(rows), [found.get(r) for r in rows], [None] * len(rows)


READ_BACK = {"parquet": _parquet_rows, "img2dataset": _parquet_rows, "webdataset": _tar_rows,
             "text": _text_rows}


def download(config: SubsetConfig, n_urls: int) -> dict:
    """Run img2dataset on the URL list (webdataset output); return its summed shard stats."""
    from engine.errors import require

    if n_urls == 0:
        return {"output_folder": config.download, "count": 0, "successes": 0, "failed": 0}
    img2dataset = require("img2dataset", "subset --download")
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    img2dataset.download(
        url_list=config.out, input_format="parquet", url_col="url", caption_col="caption",
        save_additional_columns=["source_key", "source", "row"], output_format="webdataset",
        output_folder=config.download, image_size=config.image_size, resize_mode="keep_ratio",
        processes_count=config.processes, thread_count=config.threads, enable_wandb=False)
    totals = {"output_folder": config.download, "count": 0, "successes": 0, "failed": 0}
    for stats_file in sorted(Path(config.download).glob("*_stats.json")):
        stats = storage.read_json(stats_file)
        for key in ("count", "successes"):
            totals[key] += int(stats.get(key, 0))
        totals["failed"] += int(stats.get("failed_to_download", 0)) + int(stats.get("failed_to_resize", 0))
    return totals
