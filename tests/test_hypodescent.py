"""Hypodescent: morph tables and folders (and their bad forms), the per-image and per-step
statistics on planted embeddings, and the job end to end with the tiny model."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import polars as pl
import pytest

from engine.errors import InputError
from engine.faces import hypodescent as hd
from engine.faces.association import sc_eat
from engine.faces.morphs import read_morphs
from tests.helpers_manifest import assert_manifest_header


# --- reading morph series ---------------------------------------------------------------------

def test_table_with_aliases_relative_images_and_derived_ratio(tmp_path):
    pl.DataFrame({"Series": ["s1", "s1", "s1"], "frame": [0, 1, 2], "source": ["Black"] * 3,
                  "target": ["White"] * 3, "file": ["a.png", "b.png", "/abs/c.png"]}).write_csv(tmp_path / "m.csv")
    morphs = read_morphs(tmp_path / "m.csv")
    assert morphs["mixing_ratio"].to_list() == [0.0, 0.5, 1.0]
    assert morphs["image"].to_list() == [str(tmp_path / "a.png"), str(tmp_path / "b.png"), "/abs/c.png"]
    assert morphs.columns == ["series_id", "step", "mixing_ratio", "source_group", "target_group", "image"]


def test_folder_layout_and_a_folder_holding_a_table(tmp_path):
    from tests.helpers_association import morph_folder

    morphs = read_morphs(morph_folder(tmp_path / "layout", series=2, steps=3))
    assert morphs.height == 2 * 2 * 3
    assert set(morphs["source_group"]) == {"Black", "Asian"} and set(morphs["target_group"]) == {"White"}
    assert morphs.filter(source_group="Asian", series_id="001")["mixing_ratio"].to_list() == [0.0, 0.5, 1.0]
    table_dir = tmp_path / "with-table"
    table_dir.mkdir()
    pl.DataFrame({"series_id": [1, 1], "step": [0, 1], "mixing_ratio": [0.1, 0.9], "source_group": ["Asian"] * 2,
                  "target_group": ["White"] * 2, "image": ["x.png", "y.png"]}).write_parquet(table_dir / "morphs.parquet")
    assert read_morphs(table_dir)["mixing_ratio"].to_list() == [0.1, 0.9]


@pytest.mark.parametrize("rows,message", [
    ({"series": ["1"], "step": ["0"], "source": ["Black"], "image": ["a.png"]}, "no target_group column"),
    ({"series": ["1", "1"], "step": ["0", "0"], "source": ["B"] * 2, "target": ["W"] * 2, "image": ["a", "b"]},
     "step 0 twice"),
    ({"series": ["1"], "step": ["0"], "ratio": ["1.5"], "source": ["B"], "target": ["W"], "image": ["a"]},
     "in \\[0, 1\\]"),
    ({"series": ["1"], "step": ["0"], "source": ["W"], "target": ["W"], "image": ["a"]}, "both 'W'"),
    ({"series": ["1"], "step": ["first"], "source": ["B"], "target": ["W"], "image": ["a"]}, "integer"),
    ({"series": ["1"], "step": ["0"], "source": [None], "target": ["W"], "image": ["a"]}, "empty cells"),
])
def test_bad_morph_tables_are_refused(tmp_path, rows, message):
    pl.DataFrame(rows).write_csv(tmp_path / "m.csv")
    with pytest.raises(InputError, match=message):
        read_morphs(tmp_path / "m.csv")


def test_bad_morph_folders_are_refused(tmp_path):
    (tmp_path / "BlackWhite" / "1").mkdir(parents=True)
    with pytest.raises(InputError, match="_to_"):
        read_morphs(tmp_path)
    (tmp_path / "BlackWhite" / "1").rmdir()
    (tmp_path / "BlackWhite").rmdir()
    (tmp_path / "Black_to_White" / "1").mkdir(parents=True)
    (tmp_path / "Black_to_White" / "1" / "mid.png").write_bytes(b"")
    with pytest.raises(InputError, match="step number"):
        read_morphs(tmp_path)
    with pytest.raises(InputError, match="do not exist"):
        read_morphs(tmp_path / "absent")


# --- statistics on planted embeddings ----------------------------------------------------------

def planted_morphs(series: int = 6, steps: int = 9, dim: int = 32, seed: int = 0):
    """Images on the line from a Black-face direction to a White-face direction; each image's
    'person' component moves with its White jitter: White ~ person correlation is planted."""
    rng = np.random.default_rng(seed)
    black, white, person, multi = np.eye(dim)[:4]
    rows, vectors = [], []
    for s in range(series):
        for step in range(steps):
            ratio = step / (steps - 1)
            jitter = rng.normal(0, 0.15)
            rows.append((str(s), step, ratio, "Black", "White", f"{s}/{step}.png"))
            vectors.append((1 - ratio) * black + (ratio + jitter) * white + (0.3 + 3 * jitter) * person
                           + 0.05 * rng.normal(size=dim))
    morphs = pl.DataFrame(rows, schema=["series_id", "step", "mixing_ratio", "source_group", "target_group",
                                        "image"], orient="row")
    prompts = hd.PromptVectors(race={"Black": black, "White": white, "Asian": -white},
                               labels={"multiracial": multi, "person": person},
                               pleasant=rng.normal(size=(25, dim)), unpleasant=rng.normal(size=(25, dim)))
    return morphs, np.array(vectors), prompts


def test_per_image_scores_match_direct_computation():
    morphs, vectors, prompts = planted_morphs()
    scored = hd.score_images(morphs, vectors, prompts)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    np.testing.assert_allclose(scored["sim_minority"], unit[:, 0])
    np.testing.assert_allclose(scored["sim_target"], unit[:, 1])
    np.testing.assert_allclose(scored["sim_person"], unit[:, 2])
    np.testing.assert_allclose(scored["negative_valence"],
                               sc_eat(vectors, prompts.unpleasant, prompts.pleasant, test=False).effect_sizes)
    assert (scored["labelled_minority"] == (scored["sim_minority"] > scored["sim_target"])).all()


def test_step_and_pair_tables_show_the_planted_pattern():
    morphs, vectors, prompts = planted_morphs()
    scored = hd.score_images(morphs, vectors, prompts)
    steps = hd.step_table(scored, ["multiracial", "person"])
    assert steps["share_minority"][0] == 1.0 and steps["share_minority"][-1] == 0.0
    assert steps["share_argmax_target"][-1] == 1.0 and steps["n_series"].to_list() == [6] * 9
    middle = scored.filter(step=4)
    expected_r = np.corrcoef(middle["sim_target"], middle["sim_person"])[0, 1]
    assert steps.filter(step=4)["r_target_person"][0] == pytest.approx(expected_r)
    assert expected_r > 0.5
    expected_valence_r = np.corrcoef(middle["negative_valence"], middle["sim_minority"])[0, 1]
    assert steps.filter(step=4)["r_valence_minority"][0] == pytest.approx(expected_valence_r)
    pairs = hd.pair_table(scored, steps)
    pair = pairs.row(0, named=True)
    assert (pair["n_series"], pair["n_images"], pair["n_steps"]) == (6, 54, 9)
    assert pair["midpoint_ratio"] == 0.5
    assert pair["midpoint_share_minority"] == steps.filter(step=4)["share_minority"][0]
    first_majority = steps.filter(pl.col("share_minority") <= 0.5)["mixing_ratio"].min()
    assert pair["crossover_ratio"] == first_majority


def test_label_prompts():
    assert hd.label_prompt("person") == "a photo of a person"
    assert hd.label_prompt("Asian") == "a photo of an Asian person"
    assert hd.label_prompt("mixed race") == "a photo of a mixed race person"
    assert hd.label_prompt("Latina", "{Article} {word} woman") == "A Latina woman"
    assert hd.column_slug("mixed race") == "mixed_race"


# --- the job, end to end -------------------------------------------------------------------------

def test_hypodescent_job_end_to_end_with_the_tiny_model(tmp_path, capsys):
    from engine.cli import main
    from tests.helpers_association import morph_folder
    from tests.helpers_index import tiny_encoder

    root = morph_folder(tmp_path / "morphs")
    (root / "Black_to_White" / "001" / "2.png").write_bytes(b"not an image")
    out = tmp_path / "out"
    args = ["hypodescent", str(root), "--model", "vlaudit-tiny", "--pretrained", "none",
            "--label", "Creole", "--out", str(out), "--json", "--device", "cpu"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["images"] == 29 and summary["failures"] == 1
    assert sorted(summary["charts"]) == ["chart_asian_to_white.svg", "chart_black_to_white.svg"]
    images = pl.read_parquet(out / "images.parquet")
    assert "sim_creole" in images.columns and "sim_mixed_race" in images.columns
    # oracle: the same model's embeddings of one image and its prompts
    encoder = tiny_encoder()
    row = images.filter(source_group="Asian", series_id="002", step=3).row(0, named=True)
    image, _ = encoder.encode_image_refs([row["image"]], num_workers=0)
    prompts = encoder.encode_texts(["a photo of an Asian person", "a photo of a White person", "a photo of a person"])
    np.testing.assert_allclose([row["sim_minority"], row["sim_target"], row["sim_person"]],
                               (image @ prompts.T)[0], atol=1e-5)
    steps = pl.read_parquet(out / "steps.parquet")
    assert steps.filter(source_group="Black", step=2)["n_series"][0] == 2  # the unreadable frame is left out
    assert pl.read_parquet(out / "failures.parquet")["image"][0].endswith("001/2.png")
    chart = ET.parse(out / "chart_black_to_white.svg").getroot()
    assert chart.tag.endswith("svg") and "Hypodescent: Black to White" in ET.tostring(chart, encoding="unicode")
    assert not (out / ".partial").exists()  # the resumable shards are gone once outputs are written
    manifest = json.loads((out / "manifest.json").read_text())
    assert_manifest_header(manifest, "hypodescent")
    assert manifest["prompts"]["labels"]["person"] == "a photo of a person"
    assert set(manifest["files"]) >= {"images.parquet", "chart_asian_to_white.svg", "summary.json"}


def test_image_embedding_resumes_from_finished_shards(tmp_path):
    from engine.faces.shard_embedding import embed_images
    from tests.helpers_index import make_images, tiny_spec

    images = make_images(tmp_path / "img", 5)
    (tmp_path / "img" / "broken.png").write_bytes(b"not an image")
    images.append(str(tmp_path / "img" / "broken.png"))
    first = embed_images(images, tiny_spec(), tmp_path / "work", device="cpu", shard_size=2, progress=False)
    assert first.resumed == 0 and first.vectors.shape[0] == 5 and list(first.failed) == [5]
    # a crash after two of three shards: the last shard's outputs are missing
    (first.work_dir / "shard-00002_stats.json").unlink()
    (first.work_dir / "shard-00002.npy").unlink()
    again = embed_images(images, tiny_spec(), tmp_path / "work", device="cpu", shard_size=2, progress=False)
    assert again.resumed == 2 and again.work_dir == first.work_dir
    np.testing.assert_array_equal(again.vectors, first.vectors)
    assert again.failed == first.failed
    other = embed_images(images[:4], tiny_spec(), tmp_path / "work", device="cpu", shard_size=2, progress=False)
    assert other.resumed == 0 and other.work_dir != first.work_dir


def test_hypodescent_without_a_model_is_a_clear_error(tmp_path, capsys):
    from engine.cli import main

    assert main(["hypodescent", str(tmp_path)]) == 2
    assert "choose a model with --model" in capsys.readouterr().err
