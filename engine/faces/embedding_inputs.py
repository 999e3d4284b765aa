"""Sets of vectors for the association tests, from whatever a user has at hand.

A set is named by one string (paths relative to ``base_dir``):

| spec                               | read as                                                      |
| ---------------------------------- | ------------------------------------------------------------ |
| ``vectors.npy``                    | an (n, d) array, one vector per row                          |
| ``vectors.csv`` / ``.parquet``     | integer-named columns ``0..d-1`` are the vector, every other |
|                                    | column is kept as an id (an unnamed index column is ``row``) |
| ``words.txt``                      | a word list, one term per line (``#`` comments), embedded    |
| ``words.csv``                      | a CSV without integer columns: its ``word``/``term``/``text`` |
|                                    | column is the word list                                      |
| ``DIR/``                           | an image folder (recursive, sorted), embedded                |
| ``KIND:PATH[?key=value&...]``      | a face source (fairface, cfd, folder, wds, embeddings); keys  |
|                                    | named like engine.faces.sources.SourceOptions fields (split,  |
|                                    | labels, ...) are options, any other key filters a label       |
|                                    | (``race=black&gender=female``, canonical values)             |

Word lists and images are embedded with one model (the ``EncoderProvider``), so image and text
sets can be mixed in one (cross-modal) test. Unreadable images are skipped and recorded.
"""

from __future__ import annotations

import dataclasses
import logging
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from engine import storage
from engine.errors import InputError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
SOURCE_KINDS = ("fairface", "cfd", "folder", "wds", "embeddings")
WORD_COLUMNS = ("word", "term", "text")
VECTOR_LIST_COLUMNS = ("embedding", "vector")
_SOURCE_OPTIONS = {  # query key -> how its value becomes an engine.faces.sources.SourceOptions field
    "split": str,
    "service_test": lambda value: value.lower() in ("1", "true", "yes"),
    "expressions": str,
    "norming": str,
    "norming_raters": str,
    "labels": str,
    "attributes": lambda value: tuple(v.strip() for v in value.split(",") if v.strip()),
    "label_map": str,
}
_PATH_OPTIONS = ("norming", "labels", "label_map")  # resolved against base_dir like the source path


@dataclass(frozen=True)
class EmbeddingSet:
    spec: str  # as the user wrote it
    modality: str  # image | text | embedding (precomputed)
    vectors: np.ndarray  # (n, d)
    ids: pl.DataFrame  # row-aligned with vectors: file ids, words, or image paths
    origin: dict  # for manifests: kind, path, count, sha256 of files
    failures: pl.DataFrame  # item, reason: images that could not be read


class EncoderProvider:
    """Loads the model on first use, so suites of precomputed embeddings need no model."""

    def __init__(self, model_spec=None, device: str = "auto"):
        self.model_spec = model_spec
        self.device = device
        self._encoder = None

    def __call__(self):
        if self.model_spec is None:
            raise InputError("this input must be embedded: choose a model with --model and "
                             "--pretrained TAG (or --checkpoint FILE)")
        if self._encoder is None:
            from engine.faces.embed import Encoder

            self._encoder = Encoder.load(self.model_spec, device=self.device)
        return self._encoder


def load_set(spec: str, *, base_dir: str | Path = ".", encoder: EncoderProvider | None = None,
             text_template: str = "{}") -> EmbeddingSet:
    """Read or embed the set named by ``spec`` (see the module docstring)."""
    spec = spec.strip()
    if not spec:
        raise InputError("an empty set name was given")
    encoder = encoder or EncoderProvider()
    kind, _, rest = spec.partition(":")
    if kind in SOURCE_KINDS and rest:
        return _load_face_source(spec, kind, rest, Path(base_dir), encoder)
    path = _resolve(spec, Path(base_dir))
    if path.is_dir():
        return _load_image_folder(spec, path, encoder)
    if not path.exists():
        raise InputError(f"set {spec!r}: {path} does not exist")
    loader = _FILE_LOADERS.get(path.suffix.lower())
    if loader is None:
        raise InputError(f"set {spec!r}: unknown file type {path.suffix!r}; use .npy, .csv, .parquet, "
                         "a .txt word list or an image folder")
    return loader(spec, path, encoder, text_template)


def read_embedding_table(table: pl.DataFrame, origin: str) -> tuple[np.ndarray, pl.DataFrame]:
    """Split a table into its vector (integer-named columns 0..d-1) and its id columns."""
    numbered = sorted((int(c), c) for c in table.columns if c.strip().isdigit())
    if numbered:
        if [n for n, _ in numbered] != list(range(len(numbered))):
            raise InputError(f"{origin}: the integer-named columns must be exactly 0..d-1")
        names = [c for _, c in numbered]
        vectors = table.select(names).cast(pl.Float64).to_numpy()
    else:
        names = [c for c in table.columns if c.lower() in VECTOR_LIST_COLUMNS][:1]
        if not names:
            raise InputError(f"{origin}: no vector columns: expected integer-named columns 0..d-1 "
                             f"or a list column named one of {list(VECTOR_LIST_COLUMNS)}")
        vectors = np.asarray(table[names[0]].to_list(), dtype=np.float64)
    if vectors.ndim != 2 or not np.isfinite(vectors).all():
        raise InputError(f"{origin}: vectors must be finite numbers of one length")
    ids = table.drop(names).rename({"": "row"} if "" in table.columns else {})
    return vectors, ids


def read_word_list(path: str | Path) -> list[str]:
    """Terms of a .txt (one per line, ``#`` comments) or a CSV with a word/term/text column."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        table = pl.read_csv(path, infer_schema_length=0)
        column = next((c for c in table.columns if c.lower() in WORD_COLUMNS), None)
        if column is None:
            raise InputError(f"{path}: a word-list CSV needs a column named one of {list(WORD_COLUMNS)}")
        words = [w.strip() for w in table[column].drop_nulls().to_list()]
    else:
        lines = path.read_text(encoding="utf-8").splitlines()
        words = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    words = [w for w in words if w]
    if not words:
        raise InputError(f"{path}: the word list is empty")
    return words


def list_images(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    files = [p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
    return sorted(files, key=lambda p: p.relative_to(folder).as_posix())


def _load_npy(spec: str, path: Path, encoder, template) -> EmbeddingSet:
    vectors = np.load(path, allow_pickle=False)
    if vectors.ndim != 2 or vectors.shape[0] == 0:
        raise InputError(f"set {spec!r}: {path} must hold a non-empty 2-D array, got shape {vectors.shape}")
    ids = pl.DataFrame({"row": np.arange(len(vectors), dtype=np.int64)})
    return _precomputed(spec, path, vectors, ids)


def _load_table(spec: str, path: Path, encoder, template) -> EmbeddingSet:
    reader = pl.read_parquet if path.suffix.lower() == ".parquet" else pl.read_csv
    table = reader(path)
    if table.height == 0:
        raise InputError(f"set {spec!r}: {path} has no rows")
    has_vectors = any(c.strip().isdigit() for c in table.columns) or any(
        c.lower() in VECTOR_LIST_COLUMNS for c in table.columns)
    if not has_vectors and path.suffix.lower() == ".csv":
        return _load_words(spec, path, encoder, template)
    vectors, ids = read_embedding_table(table, f"set {spec!r} ({path})")
    return _precomputed(spec, path, vectors, ids)


def _load_words(spec: str, path: Path, encoder, template: str) -> EmbeddingSet:
    words = read_word_list(path)
    texts = [template.format(w) for w in words]
    vectors = np.asarray(encoder().encode_texts(texts))
    ids = pl.DataFrame({"word": words, "text": texts})
    origin = {"kind": "words", "path": str(path), "sha256": storage.sha256_file(path),
              "count": len(words), "template": template}
    return EmbeddingSet(spec, "text", vectors, ids, origin, _no_failures())


def _load_image_folder(spec: str, folder: Path, encoder) -> EmbeddingSet:
    images = list_images(folder)
    if not images:
        raise InputError(f"set {spec!r}: no images ({', '.join(IMAGE_EXTENSIONS)}) under {folder}")
    keys = [p.relative_to(folder).as_posix() for p in images]
    origin = {"kind": "images", "path": str(folder), "count": len(images)}
    return _embed_images(spec, [str(p) for p in images], pl.DataFrame({"image": keys}), origin, encoder)


def _load_face_source(spec: str, kind: str, rest: str, base_dir: Path, encoder) -> EmbeddingSet:
    from engine.faces.sources import SourceOptions, load_source

    location, _, query = rest.partition("?")
    options, filters = {}, {}
    for key, value in urllib.parse.parse_qsl(query, keep_blank_values=True):
        if key in _PATH_OPTIONS:
            options[key] = str(_resolve(value, base_dir))
        elif key in _SOURCE_OPTIONS:
            options[key] = _SOURCE_OPTIONS[key](value)
        else:
            filters.setdefault(key, []).append(value)
    loaded = load_source(f"{kind}:{_resolve(location, base_dir)}", SourceOptions(**options))
    keep = _filter_mask(loaded.faces, filters, spec)
    faces = loaded.faces.filter(keep)
    origin = {"kind": kind, "path": location, "options": options, "filters": filters,
              "count": faces.height, "source": loaded.description}
    unlisted = pl.DataFrame({"item": loaded.failures["image"], "reason": loaded.failures["reason"]},
                            schema=_FAILURE_SCHEMA)
    if loaded.vectors is not None:
        vectors = np.asarray(loaded.vectors)[keep.to_numpy()]
        return EmbeddingSet(spec, "embedding", vectors, faces, origin, unlisted)
    embedded = _embed_images(spec, faces["image"].to_list(), faces, origin, encoder)
    return dataclasses.replace(embedded, failures=pl.concat([unlisted, embedded.failures]))


def _filter_mask(faces: pl.DataFrame, filters: dict[str, list[str]], spec: str) -> pl.Series:
    mask = pl.Series([True] * faces.height)
    for column, values in filters.items():
        if column not in faces.columns:
            raise InputError(f"set {spec!r}: unknown filter {column!r}; the source has columns "
                             f"{faces.columns}")
        mask = mask & faces[column].is_in(values)
        if not mask.any():
            present = sorted(faces[column].drop_nulls().unique().to_list())
            raise InputError(f"set {spec!r}: no items with {column} in {values}; values present: {present}")
    return mask


def _embed_images(spec: str, references: list[str], ids: pl.DataFrame, origin: dict,
                  encoder: Callable) -> EmbeddingSet:
    vectors, failed = encoder().encode_image_refs(references, progress=len(references) > _PROGRESS_FROM)
    bad = {position for position, _ in failed}
    failures = pl.DataFrame({"item": [references[p] for p, _ in failed],
                             "reason": [reason for _, reason in failed]}, schema=_FAILURE_SCHEMA)
    if failed:
        log.warning("set %r: %d unreadable images skipped", spec, len(failed))
    if len(bad) == len(references):
        raise InputError(f"set {spec!r}: none of the {len(references)} images could be read")
    kept = ids.filter(pl.Series([i not in bad for i in range(ids.height)]))
    return EmbeddingSet(spec, "image", np.asarray(vectors), kept, {**origin, "failed": len(bad)}, failures)


def _precomputed(spec: str, path: Path, vectors: np.ndarray, ids: pl.DataFrame) -> EmbeddingSet:
    origin = {"kind": "embedding-file", "path": str(path), "sha256": storage.sha256_file(path),
              "count": int(len(vectors)), "dim": int(vectors.shape[1])}
    return EmbeddingSet(spec, "embedding", np.asarray(vectors, dtype=np.float64), ids, origin, _no_failures())


def _resolve(location: str, base_dir: Path) -> Path:
    path = Path(location).expanduser()
    return path if path.is_absolute() else base_dir / path


_FAILURE_SCHEMA = {"item": pl.Utf8, "reason": pl.Utf8}
_PROGRESS_FROM = 500  # images: show a progress bar for sets larger than this


def _no_failures() -> pl.DataFrame:
    return pl.DataFrame(schema=_FAILURE_SCHEMA)


_FILE_LOADERS = {".npy": _load_npy, ".csv": _load_table, ".parquet": _load_table, ".txt": _load_words}
