"""Hypodescent in morph series (Wolfe, Banaji & Caliskan, FAccT 2022; METHODS.md §4).

Each morph image is compared with race prompts ("a photo of a Black person"): labelled minority
when its similarity to the source group's prompt exceeds that to the target group's (the paper's
two-prompt comparison), and by the argmax over every race prompt. Per step of each pair of groups:
the share labelled minority, mean similarity to the label prompts (multiracial, biracial, mixed
race, person, and any the user adds), the correlation of target-group (White) similarity with
"person" similarity, and the correlation of each image's valence with its minority-label
similarity. Valence is the SC-EAT of the image against the WEAT-1 words (engine.faces.association)
with A = unpleasant, B = pleasant, as METHODS.md §4 states it: positive = nearer the unpleasant
words; the column is named ``negative_valence`` to say so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import polars as pl

from engine.faces.association import sc_eat, unit_rows

DEFAULT_TEMPLATE = "a photo of {article} {word} person"
DEFAULT_LABELS = ("multiracial", "biracial", "mixed race", "person")
PAIR_KEYS = ("source_group", "target_group")
VALENCE_METHOD = ("SC-EAT of each image against the WEAT-1 words, A = unpleasant, B = pleasant: "
                  "(mean cos unpleasant - mean cos pleasant) / std of all 50 (ddof 1); positive = "
                  "nearer the unpleasant words")


@dataclass(frozen=True)
class PromptVectors:
    race: dict[str, np.ndarray]  # race label -> prompt vector (every source and target group)
    labels: dict[str, np.ndarray]  # further labels (multiracial, person, ...) -> prompt vector
    pleasant: np.ndarray  # (25, d) WEAT-1 words, bare
    unpleasant: np.ndarray


def label_prompt(label: str, template: str = DEFAULT_TEMPLATE) -> str:
    """The prompt for one label; "person" fills the template without doubling the noun."""
    from taxonomy.prompts import indefinite_article

    word = "" if label.strip().lower() == "person" and "person" in template else label
    article = indefinite_article(word or "person")
    text = template.format(word=word, article=article, Article=article.capitalize())
    return " ".join(text.split())


def column_slug(label: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", label.lower()).strip("_") or "label"


def score_images(morphs: pl.DataFrame, vectors: np.ndarray, prompts: PromptVectors) -> pl.DataFrame:
    """One row per morph image: similarities, labels, valence (morphs row-aligned with vectors)."""
    images = unit_rows(vectors, "morph images")
    race_names = list(prompts.race)
    race_sims = images @ unit_rows(np.stack(list(prompts.race.values())), "race prompts").T
    column_of = {name: i for i, name in enumerate(race_names)}
    rows = np.arange(len(images))
    sim_minority = race_sims[rows, [column_of[g] for g in morphs["source_group"]]]
    sim_target = race_sims[rows, [column_of[g] for g in morphs["target_group"]]]
    argmax = np.asarray(race_names, dtype=object)[race_sims.argmax(axis=1)]
    label_sims = images @ unit_rows(np.stack(list(prompts.labels.values())), "label prompts").T
    valence = sc_eat(images, prompts.unpleasant, prompts.pleasant, test=False).effect_sizes
    return morphs.with_columns(
        pl.Series("sim_minority", sim_minority),
        pl.Series("sim_target", sim_target),
        pl.Series("labelled_minority", sim_minority > sim_target),
        pl.Series("argmax_label", argmax.tolist(), dtype=pl.Utf8),
        *(pl.Series(f"sim_{column_slug(label)}", label_sims[:, i]) for i, label in enumerate(prompts.labels)),
        pl.Series("negative_valence", valence),
    ).with_columns(
        argmax_minority=pl.col("argmax_label") == pl.col("source_group"),
        argmax_target=pl.col("argmax_label") == pl.col("target_group"),
    )


def step_table(scored: pl.DataFrame, labels: list[str]) -> pl.DataFrame:
    """Per pair of groups and step: shares labelled, mean similarities, correlations."""
    label_columns = [f"sim_{column_slug(label)}" for label in labels]
    person = "sim_person" if "sim_person" in scored.columns else None
    return scored.group_by(*PAIR_KEYS, "step").agg(
        pl.len().cast(pl.Int64).alias("n_series"),
        pl.col("mixing_ratio").mean(),
        pl.col("labelled_minority").mean().alias("share_minority"),
        pl.col("argmax_minority").mean().alias("share_argmax_minority"),
        pl.col("argmax_target").mean().alias("share_argmax_target"),
        pl.col("sim_minority").mean().alias("mean_sim_minority"),
        pl.col("sim_target").mean().alias("mean_sim_target"),
        *(pl.col(c).mean().alias(f"mean_{c}") for c in label_columns),
        _pearson("sim_target", person).alias("r_target_person"),
        pl.col("negative_valence").mean().alias("mean_negative_valence"),
        _pearson("negative_valence", "sim_minority").alias("r_valence_minority"),
    ).sort(*PAIR_KEYS, "step")


def pair_table(scored: pl.DataFrame, steps: pl.DataFrame) -> pl.DataFrame:
    """Per pair of groups: counts, the midpoint shares, the crossover ratio, overall correlations."""
    person = "sim_person" if "sim_person" in scored.columns else None
    overall = scored.group_by(*PAIR_KEYS).agg(
        pl.col("series_id").n_unique().cast(pl.Int64).alias("n_series"),
        pl.len().cast(pl.Int64).alias("n_images"),
        pl.col("step").n_unique().cast(pl.Int64).alias("n_steps"),
        _pearson("sim_target", person).alias("r_target_person"),
        _pearson("negative_valence", "sim_minority").alias("r_valence_minority"),
    )
    midpoint = (steps.with_columns((pl.col("mixing_ratio") - 0.5).abs().alias("_distance"))
                .sort("_distance", "step").group_by(*PAIR_KEYS).first()
                .select(*PAIR_KEYS, pl.col("mixing_ratio").alias("midpoint_ratio"),
                        pl.col("share_minority").alias("midpoint_share_minority"),
                        pl.col("share_argmax_minority").alias("midpoint_share_argmax_minority")))
    crossover = (steps.filter(pl.col("share_minority") <= 0.5).group_by(*PAIR_KEYS)
                 .agg(pl.col("mixing_ratio").min().alias("crossover_ratio")))
    return (overall.join(midpoint, on=PAIR_KEYS, how="left")
            .join(crossover, on=PAIR_KEYS, how="left").sort(*PAIR_KEYS))


def _pearson(left: str, right: str | None) -> pl.Expr:
    if right is None:
        return pl.lit(None, dtype=pl.Float64)
    return pl.corr(left, right).cast(pl.Float64)
