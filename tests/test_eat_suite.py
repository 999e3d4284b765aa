"""Association-test inputs and suites: embedding files in every format, word lists, image folders
and face sources embedded with the tiny model (cross-modal), SC-EAT rows, bad suites, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from engine.errors import InputError
from engine.faces.association import weat
from engine.faces.eat_suite import EatConfig, run_suite
from engine.faces.embedding_inputs import load_set, read_word_list
from engine.faces.permutation import PermutationConfig
from tests.helpers_manifest import assert_manifest_header


def planted_sets(seed: int = 0, n: int = 6, dim: int = 16):
    rng = np.random.default_rng(seed)
    pole_a, pole_b = rng.normal(size=dim), rng.normal(size=dim)
    return {"x": rng.normal(size=(n, dim)) + 2 * pole_a, "y": rng.normal(size=(n, dim)) + 2 * pole_b,
            "a": rng.normal(size=(n + 1, dim)) + 3 * pole_a, "b": rng.normal(size=(n + 1, dim)) + 3 * pole_b}


def write_formats(folder: Path, name: str, vectors: np.ndarray) -> dict[str, Path]:
    """The same vectors as .npy, as a CSV with an unnamed index and an id column, and as parquet
    with a list column."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"npy": folder / f"{name}.npy", "csv": folder / f"{name}.csv", "parquet": folder / f"{name}.parquet"}
    np.save(paths["npy"], vectors)
    columns = {"": list(range(len(vectors))), **{str(j): vectors[:, j] for j in range(vectors.shape[1])},
               "img": [f"{name}{i}.jpg" for i in range(len(vectors))]}
    pl.DataFrame(columns).write_csv(paths["csv"])
    pl.DataFrame({"id": [f"{name}{i}" for i in range(len(vectors))],
                  "embedding": vectors.tolist()}).write_parquet(paths["parquet"])
    return paths


def written(path: Path, text: str) -> str:
    path.write_text(text)
    return path.name


def write_suite(path: Path, rows: list[list[str]]) -> Path:
    pl.DataFrame(rows, schema=["test", "X", "Y", "A", "B"], orient="row").write_csv(path)
    return path


def test_every_embedding_format_gives_the_same_vectors_and_result(tmp_path):
    sets = planted_sets()
    files = {name: write_formats(tmp_path / "emb", name, vectors) for name, vectors in sets.items()}
    loaded = {fmt: {name: load_set(str(files[name][fmt])) for name in sets} for fmt in ("npy", "csv", "parquet")}
    for fmt, by_name in loaded.items():
        for name, embedding_set in by_name.items():
            np.testing.assert_allclose(embedding_set.vectors, sets[name], rtol=1e-12, err_msg=fmt)
            assert embedding_set.modality == "embedding" and embedding_set.origin["sha256"]
    assert loaded["csv"]["x"].ids.columns == ["row", "img"]
    assert loaded["parquet"]["x"].ids["id"].to_list()[:2] == ["x0", "x1"]
    expected = weat(sets["x"], sets["y"], sets["a"], sets["b"]).effect_size
    suite = write_suite(tmp_path / "suite.csv", [
        [f"planted-{fmt}", *(f"emb/{n}.{fmt}" for n in "xyab")] for fmt in ("npy", "csv", "parquet")])
    summary = run_suite(EatConfig(suite=suite))
    assert [row["d"] for row in summary["tests"]] == pytest.approx([expected] * 3)
    assert all(row["method"] == "exact" and row["permutations"] == 924 for row in summary["tests"])


def test_q_values_are_benjamini_hochberg_across_tests_and_within_each_sc_eat(tmp_path):
    from scipy.stats import false_discovery_control

    for name, vectors in planted_sets(seed=5).items():
        np.save(tmp_path / f"{name}.npy", vectors)
    np.save(tmp_path / "noise.npy", np.random.default_rng(9).normal(size=(6, 16)))
    suite = write_suite(tmp_path / "s.csv", [["planted", "x.npy", "y.npy", "a.npy", "b.npy"],
                                             ["null", "noise.npy", "y.npy", "a.npy", "b.npy"],
                                             ["items-x", "x.npy", "", "a.npy", "b.npy"],
                                             ["items-y", "y.npy", "", "a.npy", "b.npy"]])
    run_suite(EatConfig(suite=suite, out_dir=tmp_path / "out"))
    results = pl.read_parquet(tmp_path / "out" / "results.parquet")
    np.testing.assert_allclose(results["q"], false_discovery_control(results["p"].to_numpy()))
    items = pl.read_parquet(tmp_path / "out" / "items.parquet")
    for test in ("items-x", "items-y"):
        one = items.filter(test=test)
        np.testing.assert_allclose(one["q"], false_discovery_control(one["p"].to_numpy()))


@pytest.mark.parametrize("make,message", [
    (lambda p: pl.DataFrame({"0": [1.0], "1": [2.0], "3": [3.0]}).write_csv(p / "gap.csv") or "gap.csv",
     "exactly 0..d-1"),
    (lambda p: pl.DataFrame({"0": [1.0], "1": [float("nan")]}).write_parquet(p / "nan.parquet") or "nan.parquet",
     "finite"),
    (lambda p: pl.DataFrame({"name": ["a"]}).write_parquet(p / "ids.parquet") or "ids.parquet", "no vector columns"),
    (lambda p: np.save(p / "flat.npy", np.ones(4)) or "flat.npy", "2-D"),
    (lambda p: written(p / "v.json", "[]"), "unknown file type"),
    (lambda p: "absent.npy", "does not exist"),
    (lambda p: written(p / "empty.txt", "# nothing\n\n"), "empty"),
])
def test_bad_embedding_inputs_are_refused(tmp_path, make, message):
    name = make(tmp_path)
    with pytest.raises(InputError, match=message):
        load_set(name, base_dir=tmp_path)


def test_word_lists(tmp_path):
    (tmp_path / "w.txt").write_text("# pleasant words\nlove\n\n  peace  \n")
    pl.DataFrame({"Word": ["a", None, "b"], "note": ["x", "y", "z"]}).write_csv(tmp_path / "w.csv")
    pl.DataFrame({"name": ["a"]}).write_csv(tmp_path / "bad.csv")
    assert read_word_list(tmp_path / "w.txt") == ["love", "peace"]
    assert read_word_list(tmp_path / "w.csv") == ["a", "b"]
    with pytest.raises(InputError, match="word/term/text|\\['word', 'term', 'text'\\]"):
        read_word_list(tmp_path / "bad.csv")
    with pytest.raises(InputError, match="choose a model with --model"):
        load_set("w.txt", base_dir=tmp_path)


def test_sc_eat_rows_unequal_sizes_and_bad_suites(tmp_path):
    sets = planted_sets()
    for name, vectors in sets.items():
        write_formats(tmp_path, name, vectors)
    np.save(tmp_path / "y_short.npy", sets["y"][:4])
    suite = write_suite(tmp_path / "s.csv", [["items", "x.csv", "", "a.npy", "b.npy"],
                                             ["short", "x.npy", "y_short.npy", "a.npy", "b.npy"]])
    with pytest.raises(InputError, match="test 'short'.*differ in size"):
        run_suite(EatConfig(suite=suite))
    summary = run_suite(EatConfig(suite=suite, unequal="resplit", out_dir=tmp_path / "out",
                                  permutation=PermutationConfig(alternative="two-sided")))
    assert summary["tests"][0]["size_variant"] == "unequal-resplit" and summary["sc_eat_items"] == 6
    items = pl.read_parquet(tmp_path / "out" / "items.parquet")
    assert items["item"].to_list() == [f"x{i}.jpg" for i in range(6)]  # ids kept from the CSV
    assert (items["d"] > 0).all() and items["alternative"].unique().to_list() == ["two-sided"]
    for rows, message in [
        ([["t", "x.npy", "y.npy", "a.npy", ""]], "empty \\['B'\\]"),
        ([["t", "x.npy", "y.npy", "a.npy", "b.npy"], ["t", "y.npy", "x.npy", "a.npy", "b.npy"]], "repeated"),
        ([["t", "x.npy", "y.npy", "a.npy", "missing.npy"]], "does not exist"),
    ]:
        with pytest.raises(InputError, match=message):
            run_suite(EatConfig(suite=write_suite(tmp_path / "bad.csv", rows)))
    pl.DataFrame({"test": ["t"], "X": ["x.npy"]}).write_csv(tmp_path / "cols.csv")
    with pytest.raises(InputError, match="missing columns \\['Y', 'A', 'B'\\]"):
        run_suite(EatConfig(suite=tmp_path / "cols.csv"))


def test_eat_cli_json_outputs_and_errors(tmp_path, capsys):
    from engine.cli import main

    for name, vectors in planted_sets().items():
        np.save(tmp_path / f"{name}.npy", vectors)
    suite = write_suite(tmp_path / "suite.csv", [["planted", "x.npy", "y.npy", "a.npy", "b.npy"]])
    out = tmp_path / "out"
    assert main(["eat", "--suite", str(suite), "--out", str(out), "--json", "--exact-max", "0",
                 "--permutations", "500", "--seed", "3"]) == 0
    result = json.loads(capsys.readouterr().out)
    row = result["tests"][0]
    assert (row["method"], row["permutations"], row["seed"]) == ("sampled", 500, 3)
    assert row["d"] > 1 and row["p"] < 0.05
    manifest = json.loads((out / "manifest.json").read_text())
    assert_manifest_header(manifest, "eat")
    assert manifest["permutation"]["permutations"] == 500 and manifest["model"] is None
    assert manifest["tables"]["results.parquet"]["columns"]["d"] == "Float64"
    assert set(manifest["files"]) == {"results.parquet", "items.parquet", "failures.parquet", "summary.json"}
    assert main(["eat", "--suite", str(tmp_path / "nope.csv")]) == 2
    assert "suite file" in capsys.readouterr().err
    assert main(["eat", "--suite", str(suite), "--permutations", "1"]) == 2


def test_cross_modal_suite_with_images_words_and_a_face_source(tmp_path):
    from tests.helpers_index import make_images, tiny_encoder, tiny_spec

    make_images(tmp_path / "x_images", 4, seed=1)
    make_images(tmp_path / "y_images", 4, seed=2)
    (tmp_path / "y_images" / "broken.png").write_bytes(b"not a png")
    make_images(tmp_path / "y_images", 5, seed=3, fmt="jpg")  # face_000..004.jpg beside the pngs
    faces = make_images(tmp_path / "faces", 6, seed=4)
    pl.DataFrame({"file": [Path(f).name for f in faces], "race": ["Black", "White"] * 3}).write_csv(
        tmp_path / "faces" / "labels.csv")
    (tmp_path / "a.txt").write_text("love\npeace\nhealth\n")
    (tmp_path / "b.txt").write_text("abuse\ncrash\nfilth\n")
    suite = write_suite(tmp_path / "suite.csv", [
        ["images-words", "x_images", "y_images", "a.txt", "b.txt"],
        ["faces-words", "folder:faces?race=black", "folder:faces?race=white", "a.txt", "b.txt"],
        ["words-images", "a.txt", "b.txt", "x_images", "folder:faces"],
    ])
    summary = run_suite(EatConfig(suite=suite, model=tiny_spec(), out_dir=tmp_path / "out", device="cpu",
                                  unequal="resplit"))
    rows = {row["test"]: row for row in summary["tests"]}
    assert (rows["images-words"]["modality_x"], rows["images-words"]["modality_a"]) == ("image", "text")
    assert (rows["images-words"]["n_x"], rows["images-words"]["n_y"]) == (4, 9)  # the broken image skipped
    assert (rows["faces-words"]["n_x"], rows["faces-words"]["n_y"]) == (3, 3)
    assert rows["words-images"]["n_b"] == 6 and rows["words-images"]["modality_b"] == "image"
    failures = pl.read_parquet(tmp_path / "out" / "failures.parquet")
    assert failures["item"].to_list() == [str(tmp_path / "y_images" / "broken.png")]
    # oracle: the same model's vectors straight from the encoder
    encoder = tiny_encoder()
    embed = lambda folder: encoder.encode_image_refs(  # noqa: E731
        [str(p) for p in sorted((tmp_path / folder).glob("face_*.png"))], num_workers=0)[0]
    x = embed("x_images")
    a, b = encoder.encode_texts(["love", "peace", "health"]), encoder.encode_texts(["abuse", "crash", "filth"])
    faces_vectors = embed("faces")
    expected = weat(faces_vectors[0::2], faces_vectors[1::2], a, b).effect_size
    assert rows["faces-words"]["d"] == pytest.approx(expected, abs=1e-5)
    reverse = weat(a, b, x, faces_vectors).effect_size
    assert rows["words-images"]["d"] == pytest.approx(reverse, abs=1e-5)
