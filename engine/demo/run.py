"""``vlaudit demo``: the whole product, end to end, on the toy world where the truth is known.

Stages (each the engine's own Python API, nothing mocked): generate the toy world -> build its
face index with the shipped tiny CLIP -> audit the index with the toy taxonomy -> scan the toy
caption shards -> link audit and scan (provenance) -> compare planted truth with what was
measured -> write the HTML report. Everything lands in ``out_dir``::

    world/ indexes/toy-faces/ audit/ captions.duckdb scan/ provenance/ checks/ report.html
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from engine import storage
from engine.demo import chart, checks
from engine.demo.model import CHECKPOINT, MODEL_NAME
from engine.demo.spec import AXES, WorldConfig
from engine.demo.world import World, generate_world
from engine.errors import InputError

log = logging.getLogger(__name__)

INDEX_NAME = "toy-faces"
REPORT_TITLE = "vlaudit demo: a synthetic world with planted bias"
DEVICE = "cpu"  # the tiny model is fast anywhere; fp32 on the CPU gives the same numbers everywhere


@dataclass(frozen=True)
class DemoConfig:
    out_dir: Path = Path("vlaudit-out")
    world: WorldConfig = field(default_factory=WorldConfig)
    k: int = 50  # faces retrieved per word
    alpha: float = 0.05  # q-value below which a skew is significant
    null_draws: int = 9999
    checkpoint: Path = CHECKPOINT
    progress: bool = True

    def __post_init__(self):
        object.__setattr__(self, "out_dir", Path(self.out_dir))
        if not 1 <= self.k <= self.world.n_faces:
            raise InputError(f"demo: k must lie in 1..{self.world.n_faces} (the toy face count), got {self.k}")


@dataclass
class DemoRun:
    """What the stages pass on: the world, the output paths and the stage timings."""

    config: DemoConfig
    world: World | None = None
    paths: dict[str, Path] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    checks: dict = field(default_factory=dict)


def run_demo(config: DemoConfig | None = None, say: Callable[[str], None] | None = None) -> dict:
    """Run every stage; return the checks, the output paths and the timings."""
    config, say = config or DemoConfig(), say or _stderr
    if not Path(config.checkpoint).is_file():
        raise InputError(f"the demo checkpoint {config.checkpoint} is missing; reinstall vlaudit or "
                         "retrain it with `python -m engine.demo.train`")
    run = DemoRun(config)
    stages = list(STAGES.items())
    for number, (name, (description, stage)) in enumerate(stages, start=1):
        say(f"[{number}/{len(stages)}] {description}")
        started = time.perf_counter()
        stage(run)
        run.seconds[name] = round(time.perf_counter() - started, 2)
        log.info("demo stage %s took %.1f s", name, run.seconds[name])
    say(f"report: {run.paths['report']}")
    return _result(run)


def group_mapping() -> pl.DataFrame:
    """Face group -> caption lexicon group: in the toy world both use the same names."""
    rows = [{"attribute": axis, "group": g, "axis": axis, "lexicon_group": g}
            for axis, groups in AXES.items() for g in groups]
    return pl.DataFrame(rows)


def _world(run: DemoRun) -> None:
    run.world = generate_world(run.config.out_dir / "world", run.config.world, progress=run.config.progress)
    run.paths["world"] = run.world.root
    mapping = run.world.root / "groups.csv"
    storage.write_text(mapping, group_mapping().write_csv())
    run.paths["groups"] = mapping


def _index(run: DemoRun) -> None:
    from engine.faces.build import BuildConfig, run_build
    from engine.faces.models import ModelSpec

    indexes = run.config.out_dir / "indexes"
    model = ModelSpec(MODEL_NAME, checkpoint=str(run.config.checkpoint))
    run_build(BuildConfig(name=INDEX_NAME, source=run.world.face_source, model=model, indexes_dir=indexes,
                          workers=0, device=DEVICE, overwrite=True, progress=run.config.progress))
    run.paths["index"] = indexes / INDEX_NAME


def _audit(run: DemoRun) -> None:
    from engine.audit import run_audit

    out = run.config.out_dir / "audit"
    run_audit(str(run.paths["index"]), str(run.world.taxonomy), out, k=run.config.k,
              attributes=tuple(AXES), null_draws=run.config.null_draws, alpha=run.config.alpha,
              device=DEVICE)
    run.paths["audit"] = out


def _scan(run: DemoRun) -> None:
    from engine.captions.scan import ScanConfig, remove_database, run_scan

    out, db = run.config.out_dir / "scan", run.config.out_dir / "captions.duckdb"
    remove_database(db)  # a fresh database: the world may have changed
    run_scan(ScanConfig(sources=(str(run.world.captions_dir),), db=str(db), out=str(out),
                        taxonomy=str(run.world.taxonomy), lexicon=str(run.world.lexicon),
                        progress=run.config.progress))
    run.paths["scan"], run.paths["db"] = out, db


def _provenance(run: DemoRun) -> None:
    from engine.provenance import run_provenance

    out = run.config.out_dir / "provenance"
    run_provenance(run.paths["audit"], run.paths["scan"], out, mapping=group_mapping())
    run.paths["provenance"] = out


def _checks(run: DemoRun) -> None:
    truth = run.world.truth()
    skew = pl.read_parquet(run.paths["audit"] / "skew.parquet")
    cooccurrence = pl.read_parquet(run.paths["scan"] / "cooccurrence.parquet")
    retrieval = checks.retrieval_checks(skew, truth, run.config.alpha)
    pairs = checks.cooccurrence_checks(cooccurrence, truth)
    run.checks = {"summary": checks.summary(retrieval, pairs), "words": retrieval.to_dicts(),
                  "pairs": pairs.to_dicts()}
    out = run.config.out_dir / "checks"
    with storage.atomic_dir(out) as tmp:
        storage.write_parquet(tmp / "retrieval_checks.parquet", retrieval)
        storage.write_parquet(tmp / "cooccurrence_checks.parquet", pairs)
        storage.write_text(tmp / "retrieval_checks.svg",
                           chart.retrieval_chart(retrieval.to_dicts(), run.config.world.planted_rate))
        storage.write_json(tmp / "summary.json", run.checks["summary"])
        storage.write_json(tmp / storage.MANIFEST_NAME, _checks_manifest(run))
    run.paths["checks"] = out


def _report(run: DemoRun) -> None:
    from engine.report.page import run_report

    out = run.config.out_dir / "report.html"
    inputs = [run.paths[name] for name in ("index", "audit", "scan", "provenance", "checks")]
    run_report(inputs, out, title=REPORT_TITLE)
    run.paths["report"] = out


STAGES: dict[str, tuple[str, Callable[[DemoRun], None]]] = {
    "world": ("generating the toy world (faces, caption shards, taxonomy, lexicon, planted truth)", _world),
    "index": ("building the toy face index with the tiny CLIP", _index),
    "audit": ("auditing retrieval skew for the toy taxonomy", _audit),
    "scan": ("scanning the toy caption shards", _scan),
    "provenance": ("linking retrieval skew to caption co-occurrence", _provenance),
    "checks": ("comparing planted truth with what was measured", _checks),
    "report": ("writing the report", _report),
}


def _checks_manifest(run: DemoRun) -> dict:
    return {**storage.manifest_header("demo"), "description": "planted truth vs measured",
            "alpha": run.config.alpha, "k": run.config.k,
            "truth": str(run.world.truth_path), "passed": run.checks["summary"]["passed"],
            "inputs": {name: str(run.paths[name]) for name in ("audit", "scan")}}


def _result(run: DemoRun) -> dict:
    return {"passed": run.checks["summary"]["passed"], "checks": run.checks,
            "outputs": {name: str(path) for name, path in run.paths.items()},
            "report": str(run.paths["report"]), "seconds": run.seconds,
            "model": {"name": MODEL_NAME, "checkpoint": str(run.config.checkpoint)}}


def _stderr(message: str) -> None:
    print(f"vlaudit demo: {message}", file=sys.stderr, flush=True)
