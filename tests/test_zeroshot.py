"""Zero-shot classification skew: prompts, ensembling, accuracy/confusion/harm tables on planted
and hand-counted cases, and the classify job end to end with the tiny model."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from engine.errors import InputError
from engine.faces import zeroshot as zs
from tests.helpers_manifest import assert_manifest_header


def test_phrases_and_prompts_read_naturally():
    assert zs.render(zs.DEFAULT_TEMPLATES[0], zs.phrase("race", "east_asian")) == "a photo of an East Asian person"
    assert zs.render(zs.DEFAULT_TEMPLATES[0], zs.phrase("race", "latino_hispanic")) == "a photo of a Latino person"
    assert zs.phrase("age", "20-29") == "20-29 year old" and zs.phrase("age", "70+") == "70+ year old"
    assert zs.phrase("race", "pacific_islander") == "pacific islander"
    assert zs.phrase("race", "black", {("race", "black"): "African American"}) == "African American"
    assert zs.joint_phrase({"gender": "female", "race": "black"}) == "Black woman"
    assert zs.joint_phrase({"race": "indian"}) == "Indian person"
    assert zs.joint_phrase({"age": "70+", "race": "white", "gender": "male"}) == "70+ year old White man"
    assert zs.render(zs.HARM_TEMPLATE, "orangutan") == "a photo of an orangutan"


def test_ensemble_is_the_normalised_mean_of_the_templates():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(3 * 2, 8))  # 3 classes x 2 templates, class-major
    by_template = zs.class_embeddings(vectors, 3, ("t1", "t2"))
    assert set(by_template) == {"t1", "t2", zs.ENSEMBLE}
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    mean = (unit[0::2] + unit[1::2]) / 2
    np.testing.assert_allclose(by_template[zs.ENSEMBLE], mean / np.linalg.norm(mean, axis=1, keepdims=True))
    np.testing.assert_allclose(by_template["t2"], unit[1::2])
    assert set(zs.class_embeddings(vectors, 6, ("only",))) == {"only"}


def small_faces() -> pl.DataFrame:
    return pl.DataFrame({"race": ["white", "white", "black", "black", "black", None],
                         "gender": ["male", "female", "male", "female", "female", "male"]})


def test_accuracy_table_hand_counted():
    faces = small_faces()
    predicted = ["white", "black", "black", "black", "white", "white"]
    table = zs.accuracy_table(faces, "race", "t", predicted, ["race", "gender"])
    rows = {(r["group_by"], r["group"]): (r["n"], r["correct"]) for r in table.to_dicts()}
    assert rows[("all", "all")] == (5, 3)  # the unlabelled face is not scored
    assert rows[("race", "white")] == (2, 1) and rows[("race", "black")] == (3, 2)
    assert rows[("gender", "female")] == (3, 1) and rows[("gender", "male")] == (2, 2)
    assert rows[("race:gender", "black:female")] == (2, 1)
    assert rows[("race:gender", "white:male")] == (1, 1)
    assert table.filter(group="all")["accuracy"][0] == pytest.approx(0.6)


def test_confusion_table_counts_every_cell():
    faces = small_faces()
    predicted = ["white", "black", "black", "black", "white", "white"]
    table = zs.confusion_table(faces["race"], predicted, ["white", "black"], "race", "t")
    cells = {(r["true_group"], r["predicted_group"]): r["count"] for r in table.to_dicts()}
    assert cells == {("white", "white"): 1, ("white", "black"): 1, ("black", "white"): 1, ("black", "black"): 2}


def test_harm_table_hand_counted():
    faces = small_faces()
    predicted = ["white:male", "gorilla", "thief", "criminal", "black:female", "animal"]
    categories = {"thief": "crime", "criminal": "crime", "gorilla": "non-human", "animal": "non-human"}
    table = zs.harm_table(faces, predicted, categories, ["race", "gender"])
    get = lambda by, group, category, label: table.filter(  # noqa: E731
        group_by=by, group=group, category=category, label=label).row(0, named=True)
    assert get("race", "black", "crime", "any")["count"] == 2 and get("race", "black", "crime", "any")["n"] == 3
    assert get("race", "white", "non-human", "gorilla")["rate"] == 0.5
    assert get("all", "all", "non-human", "any")["count"] == 2  # the unlabelled face counts in "all"
    assert get("gender", "male", "non-human", "animal")["count"] == 1
    assert get("race", "white", "crime", "any")["count"] == 0


def test_planted_classes_are_recovered():
    rng = np.random.default_rng(1)
    classes = rng.normal(size=(3, 32))
    truth = rng.integers(0, 3, 60)
    images = classes[truth] + 0.2 * rng.normal(size=(60, 32))
    assert (zs.predict(images, classes / np.linalg.norm(classes, axis=1, keepdims=True)) == truth).all()


def test_classify_job_end_to_end_with_the_tiny_model(indexes_dir, tmp_path, capsys):
    from engine.cli import main
    from engine.faces.index import open_index
    from tests.helpers_association import tiny_index
    from tests.helpers_index import tiny_encoder

    tiny_index(indexes_dir)
    out = tmp_path / "classify"
    assert main(["classify", "faces", "--indexes-dir", str(indexes_dir), "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["attributes"] == ["race", "gender", "age"] and summary["faces"] == 24
    accuracy, confusion = pl.read_parquet(out / "accuracy.parquet"), pl.read_parquet(out / "confusion.parquet")
    predictions, harm = pl.read_parquet(out / "predictions.parquet"), pl.read_parquet(out / "harm.parquet")
    # every overall accuracy agrees with its confusion matrix
    for row in accuracy.filter(group_by="all").to_dicts():
        cells = confusion.filter(attribute=row["attribute"], template=row["template"])
        diagonal = cells.filter(pl.col("true_group") == pl.col("predicted_group"))["count"].sum()
        assert (row["n"], row["correct"]) == (cells["count"].sum(), diagonal)
    assert accuracy.filter(attribute="age", group_by="all")["n"].to_list() == [23] * 3  # one face unlabelled
    # the ensemble predictions, recomputed from the same model's prompt embeddings
    index = open_index("faces", indexes_dir)
    groups = ["white", "black", "east_asian"]
    words = ["White", "Black", "East Asian"]
    texts = [zs.render(t, w) for w in words for t in zs.DEFAULT_TEMPLATES]
    classes = zs.class_embeddings(tiny_encoder().encode_texts(texts), 3, zs.DEFAULT_TEMPLATES)[zs.ENSEMBLE]
    expected = [groups[i] for i in (index.vectors() @ classes.T).argmax(axis=1)]
    assert predictions["predicted_race"].to_list() == expected
    # harm rates are the shares of the recorded harm labels
    crime = harm.filter(group_by="race", group="black", category="crime", label="any").row(0, named=True)
    black = predictions.filter(pl.Series(index.faces["race"].to_list()) == "black")
    assert crime["count"] == (black["harm_category"] == "crime").sum() and crime["n"] == black.height
    manifest = json.loads((out / "manifest.json").read_text())
    assert_manifest_header(manifest, "classify")
    assert "a photo of a gorilla" in manifest["harm_prompts"] and manifest["model"]["random_weights"]


def test_classify_refuses_unknown_or_single_group_attributes(indexes_dir, tmp_path):
    from engine.faces.index import write_index
    from engine.faces.zeroshot_job import ClassifyConfig, run_classify
    from tests.helpers_association import labelled_faces
    from tests.helpers_index import tiny_spec, unit_vectors

    faces = labelled_faces([f"x{i}.png" for i in range(4)]).with_columns(gender=pl.lit("female"))
    write_index(indexes_dir / "flat", unit_vectors(4, 64), faces, model=tiny_spec().describe(), dataset={})
    with pytest.raises(InputError, match="no labels for \\['skin'\\]"):
        run_classify(ClassifyConfig("flat", tmp_path / "o", indexes_dir, attributes=("skin",)))
    with pytest.raises(InputError, match="fewer than two groups"):
        run_classify(ClassifyConfig("flat", tmp_path / "o", indexes_dir, attributes=("gender",)))
    with pytest.raises(InputError, match="needs \\{word\\}"):
        ClassifyConfig("flat", tmp_path / "o", indexes_dir, templates=("a photo",))
