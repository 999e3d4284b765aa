"""Generate the toy world on disk: a labelled face folder, img2dataset caption shards, the toy
taxonomy and lexicon, and the planted truth.

``generate_world(out_dir, WorldConfig())`` writes::

    faces/labels.csv, faces/NNNNNN.jpg    the labelled face set (``folder:`` source layout)
    captions/NNNNN.{tar,parquet}, NNNNN_stats.json   the caption corpus (img2dataset layout)
    taxonomy.csv    category,word,pos     (the audit's and the scanner's word list)
    lexicon.csv     axis,group,term       (the scanner's group terms)
    truth.json      the world config, each word's planted group, and the planted counts

The same config gives byte-identical files (stats.json timings aside). A world already on disk
with the same config is reused.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from engine import storage
from engine.demo import draw, plan, shards
from engine.demo.spec import AXES, FACE_BASE_RATES, LEXICON, WORDS, WorldConfig, validate_words

log = logging.getLogger(__name__)

GENERATOR_VERSION = 1  # bump when the same config would draw or plan differently
_FACE_STREAM, _PAIR_STREAM = 1, 2  # seed streams for face-set and corpus images
EXTRA_COLUMNS = tuple(AXES)  # saved like img2dataset's save_additional_columns


@dataclass(frozen=True)
class World:
    """The paths of a toy world on disk."""

    root: Path

    @property
    def faces_dir(self) -> Path:
        return self.root / "faces"

    @property
    def captions_dir(self) -> Path:
        return self.root / "captions"

    @property
    def taxonomy(self) -> Path:
        return self.root / "taxonomy.csv"

    @property
    def lexicon(self) -> Path:
        return self.root / "lexicon.csv"

    @property
    def truth_path(self) -> Path:
        return self.root / "truth.json"

    @property
    def face_source(self) -> str:
        return f"folder:{self.faces_dir}"

    def shard_paths(self, suffix: str = ".tar") -> list[Path]:
        return sorted(self.captions_dir.glob(f"[0-9]*{suffix}"))

    def truth(self) -> dict:
        return storage.read_json(self.truth_path)


def generate_world(out_dir: str | Path, config: WorldConfig | None = None, *, progress: bool = True) -> World:
    """Write the world for ``config`` into ``out_dir`` (atomically), or reuse an identical one."""
    config = config or WorldConfig()
    validate_words()
    world = World(Path(out_dir))
    if world.truth_path.exists() and _same_world(world.truth(), config):
        log.info("reusing the toy world in %s", world.root)
        return world
    streams = np.random.SeedSequence(config.seed).spawn(2)
    faces = plan.plan_faces(config, np.random.default_rng(streams[0]))
    pairs = plan.plan_pairs(config, np.random.default_rng(streams[1]))
    with storage.atomic_dir(world.root) as tmp:
        staged = World(tmp)
        _write_faces(staged, faces, config, progress)
        _write_captions(staged, pairs, config, progress)
        _write_word_lists(staged)
        storage.write_json(staged.truth_path, _truth(config, faces, pairs))
    return world


def _same_world(truth: dict, config: WorldConfig) -> bool:
    return truth.get("generator") == GENERATOR_VERSION and truth.get("config") == dataclasses.asdict(config)


def face_image(config: WorldConfig, stream: int, row: int, tint: str, shape: str, eyes_closed: bool) -> bytes:
    """The JPEG of one face; its randomness depends only on (seed, stream, row)."""
    rng = np.random.default_rng([config.seed, stream, row])
    image = draw.draw_face(rng, tint=tint, shape=shape, eyes_closed=eyes_closed, size=config.image_size)
    return draw.encode_jpeg(image)


def _write_faces(world: World, faces: pl.DataFrame, config: WorldConfig, progress: bool) -> None:
    world.faces_dir.mkdir(parents=True, exist_ok=True)
    rows = faces.iter_rows(named=True)
    for i, row in enumerate(_progress(rows, faces.height, "toy faces", progress)):
        jpeg = face_image(config, _FACE_STREAM, i, row["tint"], row["shape"], row["eyes_closed"])
        (world.faces_dir / row["file"]).write_bytes(jpeg)
    storage.write_text(world.faces_dir / "labels.csv", faces.select("file", *AXES).write_csv())


def _write_captions(world: World, pairs: pl.DataFrame, config: WorldConfig, progress: bool) -> None:
    world.captions_dir.mkdir(parents=True, exist_ok=True)

    def image_for(row: dict) -> bytes:
        return face_image(config, _PAIR_STREAM, row["row"], row["tint"], row["shape"], row["eyes_closed"])

    by_shard = pairs.partition_by("shard", maintain_order=True, as_dict=True)
    for (shard_id,), rows in _progress(by_shard.items(), len(by_shard), "caption shards", progress):
        shards.write_shard(world.captions_dir, int(shard_id), rows.to_dicts(), image_for, EXTRA_COLUMNS)


def _write_word_lists(world: World) -> None:
    taxonomy = pl.DataFrame([{"category": w.category, "word": w.word, "pos": w.pos} for w in WORDS])
    storage.write_text(world.taxonomy, taxonomy.write_csv())
    lexicon = pl.DataFrame([{"axis": a, "group": g, "term": t} for (a, g), t in LEXICON.items()])
    storage.write_text(world.lexicon, lexicon.write_csv())


def _truth(config: WorldConfig, faces: pl.DataFrame, pairs: pl.DataFrame) -> dict:
    words = [{
        "word": w.word, "category": w.category, "pos": w.pos, "control": w.is_control,
        "planted_axis": w.planted_axis, "planted_group": w.planted_group,
        "planted_rate": None if w.is_control else config.planted_rate,
    } for w in WORDS]
    face_counts = {axis: {g: int((faces[axis] == g).sum()) for g in groups} for axis, groups in AXES.items()}
    return {
        "generator": GENERATOR_VERSION,
        "config": dataclasses.asdict(config),
        "axes": {axis: list(groups) for axis, groups in AXES.items()},
        "face_base_rates": {axis: dict(zip(AXES[axis], rates)) for axis, rates in FACE_BASE_RATES.items()},
        "face_counts": face_counts,
        "words": words,
        "pairs": {"total": pairs.height, "success": int((pairs["status"] == "success").sum()),
                  "failed": int((pairs["status"] != "success").sum())},
        "cooccurrence": plan.planted_counts(pairs).to_dicts(),
    }


def _progress(items, total: int, desc: str, enabled: bool):
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, total=total, desc=desc, leave=False)
