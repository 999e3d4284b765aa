"""``vlaudit hypodescent``: read morph series, embed them and the prompts with one model, run the
analysis (engine.faces.hypodescent), write its tables and one SVG chart per pair of groups.

Outputs (``out_dir``): ``images.parquet`` (one row per morph image), ``steps.parquet`` (per pair
and step), ``pairs.parquet`` (per pair), ``failures.parquet`` (unreadable images),
``chart_<source>_to_<target>.svg``, ``summary.json``, ``manifest.json``. The images are
embedded in resumable shards (engine.faces.shard_embedding) under ``out_dir/.partial/``: an
interrupted run, rerun the same way, embeds only what is missing.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from engine.errors import InputError
from engine.faces import hypodescent as hd
from engine.faces.result_files import write_run
from engine.faces.svg_chart import Line, Panel, render_svg
from engine.faces.valence_words import PLEASANT, UNPLEASANT

log = logging.getLogger(__name__)

PARTIAL_DIR = ".partial"  # resumable image embedding shards, removed once the outputs are written


@dataclass(frozen=True)
class HypodescentConfig:
    morphs: Path
    model: object  # engine.faces.embed.ModelSpec
    out_dir: Path
    template: str = hd.DEFAULT_TEMPLATE  # {word} is the label, {article} its a/an
    labels: tuple[str, ...] = hd.DEFAULT_LABELS
    race_labels: tuple[str, ...] = ()  # more race prompts for the argmax, beside the data's groups
    device: str = "auto"
    shard_size: int = 1024  # images per resumable embedding shard
    progress: bool = True

    def __post_init__(self):
        if "{word}" not in self.template:
            raise InputError(f"template {self.template!r} needs {{word}} where the label goes")
        if self.shard_size < 1:
            raise InputError(f"shard_size must be at least 1, not {self.shard_size}")
        if not self.labels:
            raise InputError("give at least one label (e.g. multiracial, person)")
        slugs = [hd.column_slug(label) for label in self.labels]
        if len(set(slugs)) != len(slugs):
            raise InputError(f"labels {list(self.labels)} repeat once spelled as column names {slugs}")


def run_hypodescent(config: HypodescentConfig) -> dict:
    from engine.faces.morphs import read_morphs
    from engine.faces.shard_embedding import embed_images

    morphs = read_morphs(config.morphs)
    embedded = embed_images(morphs["image"].to_list(), config.model, config.out_dir / PARTIAL_DIR,
                            device=config.device, shard_size=config.shard_size, progress=config.progress)
    encoder, vectors, failed = embedded.encoder, embedded.vectors, sorted(embedded.failed.items())
    failures = pl.DataFrame({"image": [morphs["image"][p] for p, _ in failed],
                             "reason": [r for _, r in failed]}, schema={"image": pl.Utf8, "reason": pl.Utf8})
    if failed:
        log.warning("%d unreadable morph images skipped (failures.parquet)", len(failed))
        morphs = morphs.filter(~pl.int_range(pl.len()).is_in([p for p, _ in failed]))
    if morphs.height == 0:
        raise InputError(f"{config.morphs}: none of the morph images could be read")
    prompts, texts = _prompt_vectors(encoder, morphs, config)
    scored = hd.score_images(morphs, vectors, prompts)
    steps = hd.step_table(scored, list(config.labels))
    pairs = hd.pair_table(scored, steps)
    charts = {_chart_name(s, t): _chart(steps.filter(source_group=s, target_group=t), s, t, config.labels)
              for s, t in pairs.select(hd.PAIR_KEYS).iter_rows()}
    summary = {"morphs": str(config.morphs), "out": str(config.out_dir), "images": scored.height,
               "failures": failures.height, "pairs": pairs.to_dicts(), "charts": sorted(charts)}
    manifest = {"morphs": str(config.morphs), "model": encoder.describe(), "prompts": texts,
                "valence": {"method": hd.VALENCE_METHOD,
                            "pleasant": list(PLEASANT), "unpleasant": list(UNPLEASANT)},
                "labels": {label: f"sim_{hd.column_slug(label)}" for label in config.labels}}
    summary["files"] = write_run(config.out_dir, stage="hypodescent", summary=summary,
                                 manifest=manifest, files=charts,
                                 tables={"images": scored, "steps": steps, "pairs": pairs,
                                         "failures": failures})
    summary["resumed_shards"] = embedded.resumed
    shutil.rmtree(config.out_dir / PARTIAL_DIR, ignore_errors=True)
    return summary


def _prompt_vectors(encoder, morphs: pl.DataFrame, config: HypodescentConfig):
    groups = morphs["source_group"].unique(maintain_order=True).to_list()
    groups += [g for g in morphs["target_group"].unique(maintain_order=True).to_list() if g not in groups]
    race = list(dict.fromkeys(groups + list(config.race_labels)))
    race_texts = [hd.label_prompt(g, config.template) for g in race]
    label_texts = [hd.label_prompt(label, config.template) for label in config.labels]
    encoded = encoder.encode_texts(race_texts + label_texts + list(PLEASANT) + list(UNPLEASANT))
    n_race, n_labels = len(race), len(config.labels)
    prompts = hd.PromptVectors(
        race=dict(zip(race, encoded[:n_race])),
        labels=dict(zip(config.labels, encoded[n_race:n_race + n_labels])),
        pleasant=encoded[n_race + n_labels:n_race + n_labels + len(PLEASANT)],
        unpleasant=encoded[n_race + n_labels + len(PLEASANT):],
    )
    texts = {"race": dict(zip(race, race_texts)), "labels": dict(zip(config.labels, label_texts))}
    return prompts, texts


def _chart_name(source: str, target: str) -> str:
    return f"chart_{hd.column_slug(source)}_to_{hd.column_slug(target)}.svg"


def _chart(steps: pl.DataFrame, source: str, target: str, labels: tuple[str, ...]) -> str:
    xs = tuple(steps["mixing_ratio"].to_list())
    col = lambda name: tuple(steps[name].to_list())  # noqa: E731
    x_label = f"mixing ratio (0 = {source} face, 1 = {target} face)"
    shares = Panel(f"Share labelled {source}", x_label, "share of series", (
        Line(f"{source} over {target} (two prompts)", xs, col("share_minority")),
        Line(f"{source} is the argmax of all race prompts", xs, col("share_argmax_minority"), dashed=True),
        Line(f"{target} is the argmax", xs, col("share_argmax_target"), dashed=True),
    ), y_range=(0.0, 1.0), guides=(0.5,))
    similarity = Panel("Mean cosine similarity to prompts", x_label, "cosine similarity", (
        Line(source, xs, col("mean_sim_minority")), Line(target, xs, col("mean_sim_target")),
        *(Line(label, xs, col(f"mean_sim_{hd.column_slug(label)}"), dashed=True) for label in labels),
    ))
    correlation = Panel("Correlations across series", x_label, "Pearson r", (
        Line(f"{target} similarity ~ person similarity", xs, col("r_target_person")),
        Line(f"negative valence ~ {source} similarity", xs, col("r_valence_minority")),
    ), y_range=(-1.0, 1.0), guides=(0.0,))
    return render_svg([shares, similarity, correlation], f"Hypodescent: {source} to {target}")

