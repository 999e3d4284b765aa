"""``vlaudit classify NAME``: zero-shot classification of an index's faces with the index's model.

Outputs (``out_dir``): ``accuracy.parquet`` (zeroshot.ACCURACY_COLUMNS), ``confusion.parquet``
(attribute, template, true_group, predicted_group, count), ``harm.parquet``
(zeroshot.HARM_COLUMNS), ``predictions.parquet`` (item_id, key, ``predicted_<attribute>`` from
the ensemble, ``harm_label``, ``harm_category``), ``summary.json``, ``manifest.json``.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from engine.errors import InputError
from engine.faces import zeroshot as zs
from engine.faces.result_files import write_run

log = logging.getLogger(__name__)

DEFAULT_ATTRIBUTES = ("race", "gender", "age")


@dataclass(frozen=True)
class ClassifyConfig:
    index: str
    out_dir: Path
    indexes_dir: Path = Path("indexes")
    attributes: tuple[str, ...] = ()  # default: race, gender, age where the index has them
    templates: tuple[str, ...] = zs.DEFAULT_TEMPLATES
    harm: bool = True
    harm_template: str = zs.HARM_TEMPLATE
    joint: tuple[str, ...] = zs.JOINT_ATTRIBUTES
    crime_labels: tuple[str, ...] = zs.CRIME_LABELS
    non_human_labels: tuple[str, ...] = zs.NON_HUMAN_LABELS
    phrases: Path | None = None  # CSV attribute,group,phrase overriding how groups read in prompts
    device: str = "auto"

    def __post_init__(self):
        for template in (*self.templates, self.harm_template):
            if "{word}" not in template:
                raise InputError(f"template {template!r} needs {{word}} where the class name goes")
        if not self.templates:
            raise InputError("give at least one template")


def run_classify(config: ClassifyConfig) -> dict:
    from engine.faces.embed import Encoder
    from engine.faces.index import open_index

    index = open_index(config.index, config.indexes_dir)
    faces, images = index.faces, index.vectors()
    attributes = _chosen_attributes(faces, config.attributes)
    overrides = read_phrases(config.phrases)
    classes = {a: _groups(faces, a) for a in attributes}
    texts = {a: [zs.render(t, zs.phrase(a, g, overrides)) for g in classes[a] for t in config.templates]
             for a in attributes}
    harm_classes = _harm_classes(faces, config, overrides) if config.harm else {}
    encoder = Encoder.load(index.model_spec, device=config.device)
    encoded = encoder.encode_texts([t for a in attributes for t in texts[a]] + list(harm_classes))
    blocks, start = {}, 0
    for attribute in attributes:
        blocks[attribute], start = encoded[start:start + len(texts[attribute])], start + len(texts[attribute])
    tables = _classify_attributes(faces, images, attributes, classes, blocks, config.templates)
    if harm_classes:
        _classify_harm(tables, faces, images, attributes, harm_classes, encoded[start:], config)
    summary = _summary(config, tables, attributes)
    manifest = {"index": {"path": str(index.path), "manifest": index.manifest}, "model": encoder.describe(),
                "attributes": attributes, "classes": classes, "templates": list(config.templates),
                "prompts": texts, "harm_prompts": harm_classes, "harm_categories": _harm_categories(config)}
    summary["files"] = write_run(config.out_dir, stage="classify", tables=tables, summary=summary,
                                 manifest=manifest)
    return summary


def _classify_attributes(faces, images, attributes, classes, blocks, templates) -> dict[str, pl.DataFrame]:
    """Accuracy and confusion per attribute and template; predictions from the ensemble."""
    accuracy, confusion, predictions = [], [], faces.select("item_id", "key")
    for attribute in attributes:
        by_template = zs.class_embeddings(blocks[attribute], len(classes[attribute]), templates)
        for template, matrix in by_template.items():
            predicted = [classes[attribute][i] for i in zs.predict(images, matrix)]
            accuracy.append(zs.accuracy_table(faces, attribute, template, predicted, attributes))
            confusion.append(zs.confusion_table(faces[attribute], predicted, classes[attribute],
                                                attribute, template))
            if template == zs.ENSEMBLE or len(by_template) == 1:
                predictions = predictions.with_columns(pl.Series(f"predicted_{attribute}", predicted))
    return {"accuracy": pl.concat(accuracy), "confusion": pl.concat(confusion), "predictions": predictions}


def _classify_harm(tables, faces, images, attributes, harm_classes, vectors, config) -> None:
    """Add the harm table and the harm predictions: joint face classes plus harmful classes."""
    labels = list(harm_classes.values())
    predicted = [labels[i] for i in zs.predict(images, zs.unit_rows(vectors, "harm prompts"))]
    categories = _harm_categories(config)
    tables["harm"] = zs.harm_table(faces, predicted, categories, attributes)
    tables["predictions"] = tables["predictions"].with_columns(
        harm_label=pl.Series(predicted, dtype=pl.Utf8)).with_columns(
        harm_category=pl.col("harm_label").replace_strict(categories, default=None, return_dtype=pl.Utf8))


def read_phrases(path: Path | None) -> dict[tuple[str, str], str]:
    """(attribute, group) -> phrase from a CSV with columns attribute, group, phrase."""
    if path is None:
        return {}
    table = pl.read_csv(path, infer_schema_length=0)
    missing = [c for c in ("attribute", "group", "phrase") if c not in table.columns]
    if missing:
        raise InputError(f"phrases file {path}: missing columns {missing}")
    return {(a, g): p for a, g, p in table.select("attribute", "group", "phrase").iter_rows()}


def _chosen_attributes(faces: pl.DataFrame, wanted: tuple[str, ...]) -> list[str]:
    from engine.faces.table import attributes as labelled

    available = labelled(faces)
    chosen = list(wanted) or [a for a in DEFAULT_ATTRIBUTES if a in available]
    unknown = [a for a in chosen if a not in available]
    if unknown or not chosen:
        raise InputError(f"the index has no labels for {unknown or list(DEFAULT_ATTRIBUTES)}; "
                         f"its labelled attributes are {available}")
    for attribute in chosen:
        if len(_groups(faces, attribute)) < 2:
            raise InputError(f"attribute {attribute!r} has fewer than two groups in the index: nothing to classify")
    return chosen


def _groups(faces: pl.DataFrame, attribute: str) -> list[str]:
    """Groups present, in the taxonomy's display order, then any others sorted."""
    from taxonomy.axes import group_order

    present = set(faces[attribute].drop_nulls().unique().to_list())
    ordered = [g for g in group_order(attribute) if g in present]
    return ordered + sorted(present - set(ordered))


def _harm_classes(faces: pl.DataFrame, config: ClassifyConfig, overrides: dict) -> dict[str, str]:
    """Prompt -> class label: the joint face classes, then the crime and non-human classes."""
    joint = [a for a in config.joint if a in faces.columns]
    if not joint:
        raise InputError(f"none of the joint attributes {list(config.joint)} is labelled in the index")
    classes = {}
    for combo in itertools.product(*(_groups(faces, a) for a in joint)):
        words = zs.joint_phrase(dict(zip(joint, combo)), overrides)
        classes[zs.render(config.harm_template, words)] = ":".join(combo)
    for label in (*config.crime_labels, *config.non_human_labels):
        classes[zs.render(config.harm_template, label)] = label
    return classes


def _harm_categories(config: ClassifyConfig) -> dict[str, str]:
    return {**{label: "crime" for label in config.crime_labels},
            **{label: "non-human" for label in config.non_human_labels}}


def _summary(config: ClassifyConfig, tables: dict, attributes: list[str]) -> dict:
    overall = tables["accuracy"].filter(pl.col("group_by") == "all").select("attribute", "template", "accuracy", "n")
    summary = {"index": config.index, "out": str(config.out_dir), "attributes": attributes,
               "faces": tables["predictions"].height, "accuracy": overall.to_dicts()}
    if "harm" in tables:
        per_group = tables["harm"].filter((pl.col("label") == "any") & pl.col("group_by").is_in(["all", *attributes]))
        summary["harm"] = per_group.select("group_by", "group", "category", "n", "rate").to_dicts()
    return summary
