"""Run a suite of embedding association tests and write the results.

A suite is a CSV with columns ``test,X,Y,A,B``: X and Y the target sets, A and B the attribute
sets, each named as engine.faces.embedding_inputs describes (paths relative to the suite file).
A row with an empty Y is an SC-EAT of every item of X against A and B. A set used by several
tests is read or embedded once.

Outputs (``out_dir``): ``results.parquet`` (one row per WEAT test, RESULT_COLUMNS and ``q``, the
Benjamini-Hochberg q-value across the suite's tests), ``items.parquet`` (one row per SC-EAT item,
ITEM_COLUMNS and ``q`` across the items of one test), ``failures.parquet`` (unreadable images),
``summary.json`` and ``manifest.json``.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import polars as pl

from engine import storage
from engine.errors import InputError
from engine.faces.association import UnequalSizes, sc_eat, weat
from engine.faces.embedding_inputs import EmbeddingSet, EncoderProvider, load_set
from engine.faces.permutation import PermutationConfig
from engine.faces.result_files import write_run

log = logging.getLogger(__name__)

SUITE_COLUMNS = ("test", "X", "Y", "A", "B")
RESULT_COLUMNS = {
    "test": pl.Utf8, "x": pl.Utf8, "y": pl.Utf8, "a": pl.Utf8, "b": pl.Utf8,
    "d": pl.Float64, "p": pl.Float64, "statistic": pl.Float64,
    "n_x": pl.Int64, "n_y": pl.Int64, "n_a": pl.Int64, "n_b": pl.Int64,
    "alternative": pl.Utf8, "method": pl.Utf8, "permutations": pl.Int64, "seed": pl.Int64,
    "size_variant": pl.Utf8, "modality_x": pl.Utf8, "modality_y": pl.Utf8,
    "modality_a": pl.Utf8, "modality_b": pl.Utf8,
}
ITEM_COLUMNS = {
    "test": pl.Utf8, "x": pl.Utf8, "a": pl.Utf8, "b": pl.Utf8, "position": pl.Int64, "item": pl.Utf8,
    "d": pl.Float64, "p": pl.Float64, "n_a": pl.Int64, "n_b": pl.Int64, "alternative": pl.Utf8,
    "method": pl.Utf8, "permutations": pl.Int64, "seed": pl.Int64, "variant": pl.Utf8,
}
_ITEM_ID_COLUMNS = ("key", "image", "img", "word", "row")


@dataclass(frozen=True)
class SuiteTest:
    name: str
    x: str
    y: str  # "" for an SC-EAT of each item of x
    a: str
    b: str


@dataclass(frozen=True)
class EatConfig:
    suite: Path
    out_dir: Path | None = None
    model: object | None = None  # engine.faces.embed.ModelSpec, needed for images and word lists
    permutation: PermutationConfig = PermutationConfig()
    unequal: UnequalSizes = "error"
    text_template: str = "{}"  # how a word is turned into a prompt ("{}": bare, as WEAT)
    device: str = "auto"

    def __post_init__(self):
        if self.unequal not in ("error", "resplit"):
            raise InputError(f"unequal must be 'error' or 'resplit', not {self.unequal!r}")
        if "{}" not in self.text_template:
            raise InputError(f"text template {self.text_template!r} needs a {{}} for the word")


def read_suite(path: str | Path) -> list[SuiteTest]:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"suite file {path} does not exist")
    table = pl.read_csv(path, infer_schema_length=0)
    missing = [c for c in SUITE_COLUMNS if c not in table.columns]
    if missing:
        raise InputError(f"suite {path}: missing columns {missing}; expected {list(SUITE_COLUMNS)}")
    table = table.select(SUITE_COLUMNS).fill_null("")
    if table.height == 0:
        raise InputError(f"suite {path} has no tests")
    tests = [SuiteTest(*(value.strip() for value in row)) for row in table.iter_rows()]
    for number, test in enumerate(tests, start=2):
        empty = [n for n, v in zip(("test", "X", "A", "B"), (test.name, test.x, test.a, test.b)) if not v]
        if empty:
            raise InputError(f"suite {path} line {number}: empty {empty}")
    duplicated = sorted({t.name for t in tests if [u.name for u in tests].count(t.name) > 1})
    if duplicated:
        raise InputError(f"suite {path}: test names must be unique; repeated: {duplicated}")
    return tests


def run_tests(tests: list[SuiteTest], get_set, permutation: PermutationConfig,
              unequal: UnequalSizes = "error") -> tuple[pl.DataFrame, pl.DataFrame]:
    """Run every test with ``get_set(spec) -> EmbeddingSet``; return (results, items) tables."""
    results, items = [], []
    for test in tests:
        x, a, b = get_set(test.x), get_set(test.a), get_set(test.b)
        _warn_if_mixed(test, [x, a, b] + ([get_set(test.y)] if test.y else []))
        if test.y:
            y = get_set(test.y)
            try:
                result = weat(x.vectors, y.vectors, a.vectors, b.vectors, permutation=permutation,
                              unequal=unequal)
            except InputError as exc:
                raise InputError(f"test {test.name!r}: {exc}") from exc
            results.append(_result_row(test, result, (x, y, a, b)))
        else:
            items.extend(_item_rows(test, x, a, b, permutation))
    results = pl.DataFrame(results, schema=RESULT_COLUMNS, orient="row")
    items = pl.DataFrame(items, schema=ITEM_COLUMNS, orient="row")
    return (results.with_columns(q=_benjamini_hochberg(results["p"])),
            items.with_columns(q=_benjamini_hochberg(pl.col("p")).over("test")))


def run_suite(config: EatConfig) -> dict:
    """Read the suite, load or embed its sets, run the tests, write outputs; return a summary."""
    tests = read_suite(config.suite)
    encoder = EncoderProvider(config.model, device=config.device)
    cache: dict[str, EmbeddingSet] = {}

    def get_set(spec: str) -> EmbeddingSet:
        if spec not in cache:
            cache[spec] = load_set(spec, base_dir=Path(config.suite).parent, encoder=encoder,
                                   text_template=config.text_template)
        return cache[spec]

    results, items = run_tests(tests, get_set, config.permutation, config.unequal)
    failures = pl.concat([s.failures.with_columns(set=pl.lit(s.spec)) for s in cache.values()])
    summary = {
        "suite": str(config.suite), "tests": results.to_dicts(), "sc_eat_items": items.height,
        "failures": failures.height, "out": str(config.out_dir) if config.out_dir else None,
    }
    if config.out_dir is not None:
        manifest = {
            "suite": {"path": str(config.suite), "sha256": storage.sha256_file(config.suite)},
            "model": config.model.describe() if config.model is not None else None,
            "permutation": asdict(config.permutation), "unequal": config.unequal,
            "text_template": config.text_template, "inputs": {k: s.origin for k, s in cache.items()},
        }
        tables = {"results": results, "items": items, "failures": failures}
        summary["files"] = write_run(config.out_dir, stage="eat", tables=tables,
                                     summary=summary, manifest=manifest)
    return summary


def _benjamini_hochberg(p):
    """q-values (Benjamini-Hochberg) of a p-value Series, or the same as an expression per group."""
    from scipy.stats import false_discovery_control

    adjust = lambda values: pl.Series(false_discovery_control(values.to_numpy(), method="bh")  # noqa: E731
                                      if len(values) else [], dtype=pl.Float64)
    if isinstance(p, pl.Expr):
        return p.map_batches(adjust, return_dtype=pl.Float64)
    return adjust(p)


def _warn_if_mixed(test: SuiteTest, sets: list[EmbeddingSet]) -> None:
    modalities = {s.modality for s in sets}
    if "embedding" in modalities and modalities & {"image", "text"}:
        log.warning("test %r mixes precomputed embeddings with sets embedded by the chosen model: "
                    "its result is meaningful only if both come from the same model", test.name)


def _result_row(test: SuiteTest, result, sets: tuple[EmbeddingSet, ...]) -> tuple:
    return (test.name, test.x, test.y, test.a, test.b, result.effect_size, result.p_value,
            result.statistic, result.n_x, result.n_y, result.n_a, result.n_b, result.alternative,
            result.method, result.permutations, result.seed, result.size_variant,
            *(s.modality for s in sets))


def _item_rows(test: SuiteTest, x: EmbeddingSet, a: EmbeddingSet, b: EmbeddingSet,
               permutation: PermutationConfig) -> list[tuple]:
    try:
        result = sc_eat(x.vectors, a.vectors, b.vectors, permutation=permutation)
    except InputError as exc:
        raise InputError(f"test {test.name!r}: {exc}") from exc
    labels = _item_labels(x.ids, len(x.vectors))
    return [(test.name, test.x, test.a, test.b, i, labels[i], float(result.effect_sizes[i]),
             float(result.p_values[i]), result.n_a, result.n_b, result.alternative, result.method,
             result.permutations, permutation.seed, result.variant) for i in range(len(labels))]


def _item_labels(ids: pl.DataFrame, count: int) -> list[str]:
    column = next((c for c in _ITEM_ID_COLUMNS if c in ids.columns), None)
    if column is None:
        return [str(i) for i in np.arange(count)]
    return [str(v) for v in ids[column].to_list()]
