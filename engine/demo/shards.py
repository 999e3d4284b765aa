"""Write caption shards in the layout img2dataset writes with ``output_format="webdataset"``.

Per shard: ``NNNNN.tar`` (successful samples only: ``<key>.jpg``, ``<key>.json``, ``<key>.txt``,
in webdataset's sorted member order), ``NNNNN.parquet`` (every input row, failures included, with
img2dataset's columns and types) and ``NNNNN_stats.json`` (img2dataset's stats keys), written
last so that its presence marks a finished shard. Tar member times are fixed, so the same rows
give byte-identical tars.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import pyarrow as pa

from engine import storage

TAR_MTIME = 0.0
OOM_SHARD_COUNT = 5
# img2dataset's parquet: the input columns (extra ones first, then caption and url), then its own.
_DOWNLOADER_FIELDS = [
    pa.field("key", pa.string()), pa.field("status", pa.string()), pa.field("error_message", pa.string()),
    pa.field("width", pa.int32()), pa.field("height", pa.int32()),
    pa.field("original_width", pa.int32()), pa.field("original_height", pa.int32()),
    pa.field("exif", pa.string()), pa.field("sha256", pa.string()),
]


def shard_name(shard_id: int) -> str:
    return f"{shard_id:0{OOM_SHARD_COUNT}d}"


def shard_schema(extra_columns: Sequence[str]) -> pa.Schema:
    inputs = [pa.field(name, pa.string()) for name in (*extra_columns, "caption", "url")]
    return pa.schema(inputs + _DOWNLOADER_FIELDS)


def write_shard(out_dir: Path, shard_id: int, rows: Sequence[dict], image_for: Callable[[dict], bytes],
                extra_columns: Sequence[str] = ()) -> dict:
    """Write one shard from ``rows`` (dicts with key, caption, url, status, error_message and the
    extra columns); ``image_for(row)`` gives the JPEG bytes of a successful row. Returns stats."""
    import pyarrow.parquet as pq
    import webdataset as wds
    from PIL import Image

    start = time.time()
    name = shard_name(shard_id)
    schema = shard_schema(extra_columns)
    metas = []
    with storage.atomic_path(out_dir / f"{name}.tar") as tmp_tar, open(tmp_tar, "wb") as stream:
        with wds.TarWriter(stream, mtime=TAR_MTIME) as tar:
            for row in rows:
                meta = {field.name: row.get(field.name) for field in schema}
                if row["status"] == "success":
                    jpeg = image_for(row)
                    width, height = Image.open(io.BytesIO(jpeg)).size
                    meta.update(width=width, height=height, original_width=width, original_height=height,
                                exif="{}", sha256=hashlib.sha256(jpeg).hexdigest())
                    tar.write({"__key__": meta["key"], "jpg": jpeg, "txt": str(meta["caption"]),
                               "json": json.dumps(meta, indent=4)})
                metas.append(meta)
    with storage.atomic_path(out_dir / f"{name}.parquet") as tmp_parquet:
        pq.write_table(pa.Table.from_pylist(metas, schema=schema), tmp_parquet)
    return _write_stats(out_dir, name, metas, start)


def _write_stats(out_dir: Path, name: str, metas: list[dict], start: float) -> dict:
    statuses = Counter(m["status"] for m in metas)
    errors = Counter(m["error_message"] for m in metas if m["error_message"])
    end = time.time()
    stats = {
        "count": len(metas),
        "successes": statuses["success"],
        "failed_to_download": statuses["failed_to_download"],
        "failed_to_resize": statuses["failed_to_resize"],
        "duration": end - start,
        "start_time": start,
        "end_time": end,
        "status_dict": dict(errors + Counter({"success": statuses["success"]})),
    }
    storage.write_text(out_dir / f"{name}_stats.json", json.dumps(stats, indent=4))
    return stats
