"""The retrieval-skew audit: taxonomy words -> prompts -> one batched search -> skew tables.

``audit(index, "sobit", k=100)`` returns an ``AuditResult`` of polars frames; ``result.write(DIR)``
(or ``run_audit``, the CLI's entry) writes them, each file atomically, the manifest last:

| file                    | content                                                               |
| ----------------------- | --------------------------------------------------------------------- |
| prompts.parquet         | taxonomy.prompts.PROMPT_SCHEMA: one row per (query, template) text    |
| prompt_embeddings.npy   | (prompts, d) float32 L2-normalised, row-aligned with prompts.parquet  |
| hits.parquet            | HITS_SCHEMA: the top k of every query with the audited labels        |
| skew.parquet            | retrieval_skew.SKEW_SCHEMA: one row per (query, attribute, group)     |
| summary.json            | attributes and base rates, aggregates per category, most skewed words |
| manifest.json           | index manifest, taxonomy hash, templates, k, seeds, versions, sha256s |

A query is one (category, word, template): ``template`` is the template set's name when a word's
templates are averaged ("ensemble", the default) or "<set>/<template id>" when run one by one.
The core, ``audit_vectors``, is pure over arrays and tables (prompt vectors, item vectors, the face
table, a search function) so it runs without a model.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

import taxonomy as tx
from engine import storage
from engine.audit_summary import metrics_table, summarise
from engine.errors import InputError
from engine.faces import groups, retrieval_skew, skew
from engine.faces.groups import INTERSECTION

log = logging.getLogger(__name__)

Search = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]
HITS_SCHEMA = {"query_id": pl.Int32, "category": pl.Utf8, "word": pl.Utf8, "template": pl.Utf8,
               "rank": pl.Int32, "item_id": pl.Int64, "score": pl.Float32}  # + one Utf8 label column per audited attribute
QUERY_KEYS = ("query_id", "category", "word", "template")
TABLES = {"prompts": "prompts.parquet", "hits": "hits.parquet", "skew": "skew.parquet"}


@dataclass(frozen=True)
class AuditConfig:
    k: int = 100
    attributes: tuple[str, ...] | None = None  # None: race, gender, age, race*gender where present
    templates: str = "sobit"  # built-in template set name or CSV path
    template_mode: tx.prompts.Mode = "ensemble"
    seed: int = 0
    null_draws: int = 9999  # simulated null: random k-subsets per attribute
    exact_max: int = 200_000  # enumerate the null exactly up to this many count vectors
    skew_floor: float | None = None  # None: 1/k
    alpha: float = 0.05  # q-value threshold for "significant" in the summary

    def __post_init__(self):
        checks = {
            "k must be a positive integer": _is_int(self.k) and self.k >= 1,
            "seed must be a non-negative integer": _is_int(self.seed) and self.seed >= 0,
            "null_draws must be an integer >= 99": _is_int(self.null_draws) and self.null_draws >= 99,
            "exact_max must be a non-negative integer": _is_int(self.exact_max) and self.exact_max >= 0,
            "skew_floor must be in (0, 1)": self.skew_floor is None or 0 < self.skew_floor < 1,
            "alpha must be in (0, 1)": 0 < self.alpha < 1,
            f"template_mode must be one of {list(tx.prompts.MODES)}": self.template_mode in tx.prompts.MODES,
        }
        failed = [message for message, ok in checks.items() if not ok]
        if failed:
            raise InputError(f"invalid audit settings: {'; '.join(failed)}")
        if self.attributes is not None:
            if isinstance(self.attributes, str) or not self.attributes:
                raise InputError("attributes must be a non-empty list of names (or None for the defaults)")
            object.__setattr__(self, "attributes", tuple(self.attributes))

    @property
    def floor(self) -> float:
        return self.skew_floor if self.skew_floor is not None else 1.0 / self.k


@dataclass(frozen=True)
class AuditResult:
    prompts: pl.DataFrame
    prompt_embeddings: np.ndarray = field(repr=False)
    hits: pl.DataFrame
    skew: pl.DataFrame
    summary: dict
    manifest: dict

    @property
    def metrics(self) -> pl.DataFrame:
        """One row per (query, attribute): the per-query metrics of ``skew``."""
        return metrics_table(self.skew)

    def write(self, out_dir: str | Path) -> Path:
        """Write every output into ``out_dir``, each file atomically, the manifest last: a
        directory without manifest.json holds no finished audit (an old one is removed first)."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / storage.MANIFEST_NAME).unlink(missing_ok=True)
        for name, file in TABLES.items():
            storage.write_parquet(out_dir / file, getattr(self, name))
        storage.write_npy(out_dir / "prompt_embeddings.npy", self.prompt_embeddings)
        storage.write_json(out_dir / "summary.json", self.summary)
        files = [*TABLES.values(), "prompt_embeddings.npy", "summary.json"]
        checksums = {f: storage.sha256_file(out_dir / f) for f in files}
        storage.write_json(out_dir / storage.MANIFEST_NAME, self.manifest | {"outputs": checksums})
        return out_dir


def audit(index, taxonomy: str | tx.Taxonomy | pl.DataFrame = "sobit", *, k: int = 100,
          encoder=None, device: str = "auto", indexes_dir: str | Path = "indexes", **settings) -> AuditResult:
    """Audit a face index (a FaceIndex or its name) with a taxonomy; ``settings`` are AuditConfig
    fields (attributes, templates, template_mode, seed, null_draws, exact_max, skew_floor, alpha).
    ``encoder`` (an engine.faces.embed.Encoder of the index's model) saves loading it again."""
    from engine.faces import index as index_store
    from engine.faces import query
    from engine.faces.embed import Encoder

    config = AuditConfig(k=k, **settings)
    face_index = index if hasattr(index, "faces") else index_store.open_index(index, indexes_dir)
    words = _as_taxonomy(taxonomy)
    templates = tx.load_templates(config.templates)
    prompts = tx.build_prompts(words.words, templates, config.template_mode)
    _check_k(config.k, face_index.faces.height)
    groups.check_names(face_index.faces, config.attributes or ())  # before the model loads
    encoder = encoder or Encoder.load(face_index.model_spec, device)
    query.check_same_model(face_index, encoder.spec)
    _check_tokens(words.words, encoder)
    embeddings = _encode_unique(encoder, prompts["text"].to_list())
    core = audit_vectors(prompts, embeddings, face_index.faces, face_index.item_vectors(),
                         lambda vectors, top: query.search(face_index, vectors, top), config,
                         item_statistics=face_index.item_statistics())
    manifest = _manifest(face_index, words, templates, config, core.summary["attributes"])
    summary = core.summary | {"index": {"name": face_index.name, "path": str(face_index.path),
                                        "items": face_index.faces.height}}
    return AuditResult(prompts, embeddings, core.hits, core.skew, summary, manifest)


def run_audit(name: str, taxonomy: str, out_dir: str | Path, *, indexes_dir: str | Path = "indexes",
              **settings) -> AuditResult:
    """Open index ``name``, audit it, write the outputs into ``out_dir``."""
    result = audit(name, taxonomy, indexes_dir=indexes_dir, **settings)
    result.write(out_dir)
    log.info("audit of %s: %d queries x %d attributes written to %s", name,
             result.summary["queries"], len(result.summary["attributes"]), out_dir)
    return result


def audit_vectors(prompts: pl.DataFrame, prompt_embeddings: np.ndarray, faces: pl.DataFrame,
                  item_vectors: np.ndarray, search: Search, config: AuditConfig, *,
                  item_statistics: skew.ItemStatistics | None = None) -> AuditResult:
    """The pure core: prompts (taxonomy.prompts.PROMPT_SCHEMA) with their embeddings, the face
    table and its vectors (row i = item_id i; an array, or anything with len() and row slices),
    and ``search(vectors, k) -> (scores, item_ids)``.
    ``item_statistics`` (an index stores them) saves computing them from ``item_vectors``."""
    _check_k(config.k, faces.height)
    names = list(config.attributes) if config.attributes is not None else groups.default_names(faces)
    attributes = groups.encode(faces, names, explicit=config.attributes is not None)
    if not attributes:
        raise InputError(f"the index has no attribute with two or more groups among {names}")
    queries, vectors, family = deduplicate(prompts, prompt_embeddings)
    scores, item_ids = search(vectors, config.k)
    settings = retrieval_skew.SkewSettings(config.k, config.floor, config.null_draws, config.exact_max, config.seed)
    statistics = item_statistics or skew.ItemStatistics.of(item_vectors)
    moments = skew.item_moments(statistics, item_vectors, [a.codes for a in attributes],
                                [len(a.groups) for a in attributes])
    results = [retrieval_skew.measure(a, item_ids, vectors, m, family, settings) for a, m in zip(attributes, moments)]
    table = retrieval_skew.skew_frame(results, queries, config.k)
    hits = _hits(queries, scores, item_ids, attributes)
    summary = summarise(table, results, config)
    return AuditResult(prompts, prompt_embeddings, hits, table, summary, {})


def deduplicate(prompts: pl.DataFrame, embeddings: np.ndarray) -> tuple[pl.DataFrame, np.ndarray, np.ndarray]:
    """Queries (QUERY_KEYS + vector_row), one vector per distinct prompt set, and BH families.

    A word in two categories has the same prompts twice: it is searched and measured once."""
    if len(embeddings) != prompts.height:
        raise InputError(f"{len(embeddings)} prompt embeddings for {prompts.height} prompts")
    query_ids = prompts["query_id"].to_numpy()
    all_vectors = tx.query_vectors(embeddings, query_ids)
    per_query = prompts.group_by("query_id", maintain_order=True).agg(
        pl.col("category", "word", "query_template").first(), texts=pl.col("text").str.join("\n"))
    distinct: dict[str, int] = {}
    vector_row = [distinct.setdefault(t, len(distinct)) for t in per_query["texts"]]
    per_query = per_query.with_columns(vector_row=pl.Series(vector_row, dtype=pl.Int64))
    first = per_query.unique("vector_row", keep="first", maintain_order=True)
    vectors = all_vectors[first["query_id"].to_numpy()]
    family = first["query_template"].rank("dense").cast(pl.Int64).to_numpy()
    queries = per_query.select("query_id", "category", "word", pl.col("query_template").alias("template"), "vector_row")
    return queries, vectors, family


def _hits(queries: pl.DataFrame, scores: np.ndarray, item_ids: np.ndarray,
          attributes: list[groups.Attribute]) -> pl.DataFrame:
    rows = queries["vector_row"].to_numpy()
    k = item_ids.shape[1]
    ids = item_ids[rows].reshape(-1)
    columns = {key: np.repeat(queries[key].to_numpy(), k) for key in QUERY_KEYS}
    columns |= {"rank": np.tile(np.arange(1, k + 1), len(rows)), "item_id": ids, "score": scores[rows].reshape(-1)}
    for attribute in attributes:
        if INTERSECTION not in attribute.name:
            names = np.asarray([*attribute.groups, None], dtype=object)
            columns[attribute.name] = names[attribute.codes[ids]].tolist()
    schema = HITS_SCHEMA | {a.name: pl.Utf8 for a in attributes if INTERSECTION not in a.name}
    return pl.DataFrame(columns).cast(schema)


def _as_taxonomy(value) -> tx.Taxonomy:
    if isinstance(value, tx.Taxonomy):
        return value
    if isinstance(value, pl.DataFrame):
        missing = [c for c in ("category", "word") if c not in value.columns]
        if missing:
            raise InputError(f"a taxonomy table needs columns category, word[, pos, article]; lacks {missing}")
        words = value.with_columns(
            *(pl.lit(default).alias(c) for c, default in (("pos", "noun"), ("article", "")) if c not in value.columns))
        return tx.Taxonomy("dataframe", words.select("category", "word", "pos", "article"), ())
    return tx.load(str(value))


def _check_k(k: int, n_items: int) -> None:
    if k > n_items:
        raise InputError(f"k = {k} exceeds the index size of {n_items} items; choose k <= {n_items}")


def _check_tokens(words: pl.DataFrame, encoder) -> None:
    empty = tx.words_without_tokens(words["word"].to_list(), encoder.tokenizer)
    if empty:
        raise InputError(f"taxonomy word(s) {empty} tokenise to nothing with {encoder.spec.name}: their "
                         "prompts would be the bare template. Remove or respell them")


def _encode_unique(encoder, texts: list[str]) -> np.ndarray:
    unique = list(dict.fromkeys(texts))
    position = {t: i for i, t in enumerate(unique)}
    vectors = encoder.encode_texts(unique)
    return vectors[[position[t] for t in texts]]


def _manifest(face_index, words: tx.Taxonomy, templates: tx.TemplateSet, config: AuditConfig,
              attributes: dict) -> dict:
    return {
        **storage.manifest_header("audit"),
        "index": {"name": face_index.name, "path": str(face_index.path), "manifest": face_index.manifest},
        "taxonomy": words.describe(),
        "templates": templates.describe() | {"mode": config.template_mode},
        "k": config.k, "seed": config.seed, "skew_floor": config.floor,
        "null": {"draws": config.null_draws, "exact_max": config.exact_max,
                 "methods": {name: a["null"] for name, a in attributes.items()}},
        "attributes": list(attributes),
    }


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)
