"""Resumable embedding of a list of images (morph series), by shards as the index build does.

The images are cut into shards of ``shard_size``; each finished shard leaves its vectors and,
written last, its stats (engine.batch), in ``work_root/<hash>/``. The hash covers the model,
its device and precision, the image list and the shard size, so an interrupted run resumes
with the finished shards and any change starts afresh. The caller removes the work directory
once its own outputs are written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from engine import batch, storage
from engine.errors import VlauditError


@dataclass(frozen=True)
class EmbeddedImages:
    encoder: object  # the engine.faces.embed.Encoder used (for prompts and the manifest)
    vectors: np.ndarray  # (readable images, d), in input order
    failed: dict[int, str]  # input position -> reason, for unreadable images
    work_dir: Path
    resumed: int  # shards finished by an earlier run


def embed_images(references: list[str], model, work_root: str | Path, *, device: str = "auto",
                 shard_size: int = 1024, batch_size: int = 64, progress: bool = True) -> EmbeddedImages:
    from engine.faces.build import EmbedShard, gather_shards, shard_tasks
    from engine.faces.embed import Encoder
    from engine.faces.images import DEFAULT_MAX_PIXELS

    encoder = batch.process_cached(Encoder.load, model, device)
    identity = {"model": encoder.describe(), "images": list(references), "shard_size": shard_size}
    work_dir = Path(work_root) / storage.sha256_bytes(json.dumps(identity, sort_keys=True).encode())[:16]
    tasks = shard_tasks(pl.DataFrame({"image": list(references)}, schema={"image": pl.Utf8}), shard_size)
    work = EmbedShard(model, device, batch_size, None, DEFAULT_MAX_PIXELS)
    report = batch.run_shards(tasks, work, work_dir, gpu=True, desc="image shards", progress=progress)
    if report.failed:
        first = next(iter(report.failed.values())).strip().splitlines()[-1]
        raise VlauditError(f"{len(report.failed)} of {len(tasks)} image shards failed ({first}); finished "
                           f"shards are kept in {work_dir}: rerun the same command to retry the rest")
    vectors, failed = gather_shards(work_dir, tasks, report.done)
    return EmbeddedImages(encoder, vectors, failed, work_dir, len(report.skipped))
