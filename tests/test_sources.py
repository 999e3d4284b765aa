"""Face sources -> one face table: FairFace, CFD, folder + CSV, clip-retrieval embeddings, bad input.

Expected canonical labels are written out here by hand (the oracle), not read from taxonomy/labels.csv.
"""

from __future__ import annotations

import csv
import hashlib
import logging

import numpy as np
import polars as pl
import pytest

from engine.errors import InputError
from engine.faces import table
from engine.faces.sources import KINDS, SourceOptions, load_source
from tests.conftest import shared_path
from tests.helpers_faces import (CFD_NAMES, make_cfd, make_embeddings, make_fairface, make_folder, write_csv,
                                 write_image, write_norming_workbook)

FAIRFACE_RACE = {"White": "white", "Black": "black", "Latino_Hispanic": "latino_hispanic",
                 "East Asian": "east_asian", "Southeast Asian": "southeast_asian", "Indian": "indian",
                 "Middle Eastern": "middle_eastern"}
FAIRFACE_AGE = {"0-2": "0-2", "3-9": "3-9", "10-19": "10-19", "20-29": "20-29", "30-39": "30-39",
                "40-49": "40-49", "50-59": "50-59", "60-69": "60-69", "more than 70": "70+"}
CFD_RACE = {"A": "asian", "B": "black", "L": "latino_hispanic", "W": "white", "M": "multiracial", "I": "indian"}
GENDER = {"Male": "male", "Female": "female", "M": "male", "F": "female"}


def read_rows(path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def check_table(faces: pl.DataFrame, kind: str) -> None:
    """The face-table contract: base columns first, ids 0..n-1, sorted keys, readable images."""
    assert faces.columns[:4] == ["item_id", "key", "image", "source"]
    assert faces["item_id"].to_list() == list(range(faces.height))
    assert faces["key"].to_list() == sorted(faces["key"].to_list())
    assert set(faces["source"]) == {kind}
    for attr in table.attributes(faces):
        assert faces.columns.index(f"{attr}_raw") == faces.columns.index(attr) + 1


# --- spec and options -------------------------------------------------------------------------

@pytest.mark.parametrize("spec", ["fairface", "nosuch:/tmp", "folder:", ":/tmp"])
def test_bad_spec_names_the_kinds(spec):
    with pytest.raises(InputError, match="KIND:PATH") as err:
        load_source(spec)
    assert all(kind in str(err.value) for kind in KINDS)


def test_options_are_validated_and_normalised():
    assert SourceOptions(expressions="n, hc").expressions == ("N", "HC")
    assert SourceOptions(attributes="race,gender").attributes == ("race", "gender")
    with pytest.raises(InputError, match="split"):
        SourceOptions(split="test")
    with pytest.raises(InputError, match="HC, HO"):
        SourceOptions(expressions=("X",))
    with pytest.raises(InputError, match="norming_raters"):
        SourceOptions(norming_raters="uk")


# --- FairFace ---------------------------------------------------------------------------------

def test_fairface_val_table(tmp_path):
    root = make_fairface(tmp_path / "ff")
    loaded = load_source(f"fairface:{root}")
    faces = loaded.faces
    check_table(faces, "fairface")
    rows = read_rows(root / "fairface_label_val.csv")
    assert faces.height == len(rows) == 14 and loaded.failures.height == 0
    assert table.attributes(faces) == ["race", "gender", "age"]
    by_key = {r["file"]: r for r in rows}
    for face in faces.iter_rows(named=True):
        row = by_key[face["key"]]
        assert face["image"] == str(root / row["file"])
        assert (face["race"], face["race_raw"]) == (FAIRFACE_RACE[row["race"]], row["race"])
        assert (face["gender"], face["age"]) == (GENDER[row["gender"]], FAIRFACE_AGE[row["age"]])
        assert face["service_test"] == (row["service_test"] == "True") and face["split"] == "val"
    assert loaded.description["count"] == 14 and loaded.description["kind"] == "fairface"
    assert loaded.description["groups"]["race"]["white"] == sum(r["race"] == "White" for r in rows)
    digest = hashlib.sha256((root / "fairface_label_val.csv").read_bytes()).hexdigest()
    assert loaded.description["label_files"] == {str(root / "fairface_label_val.csv"): digest}


def test_fairface_split_and_service_test(tmp_path):
    root = make_fairface(tmp_path / "ff")
    train = load_source(f"fairface:{root}", SourceOptions(split="train")).faces
    assert train["key"].str.starts_with("train/").all() and train.height == 6
    subset = load_source(f"fairface:{root}", SourceOptions(service_test=True)).faces
    expected = sorted(r["file"] for r in read_rows(root / "fairface_label_val.csv") if r["service_test"] == "True")
    assert subset["key"].to_list() == expected and subset["service_test"].all()


def test_fairface_repairs_spreadsheet_mangled_ages(tmp_path, caplog):
    mangled = ["03-Sep", "9-Mar", "Oct-19", "19-Oct", "20-29"]
    rows = [{"file": f"val/{i}.jpg", "age": age, "gender": "Male", "race": "White", "service_test": "False"}
            for i, age in enumerate(mangled)]
    root = make_fairface(tmp_path / "ff", val_rows=rows)
    with caplog.at_level(logging.WARNING):
        loaded = load_source(f"fairface:{root}")
    ages = dict(zip(loaded.faces["age_raw"], loaded.faces["age"]))
    assert ages == {"03-Sep": "3-9", "9-Mar": "3-9", "Oct-19": "10-19", "19-Oct": "10-19", "20-29": "20-29"}
    assert loaded.description["age_repaired"] == 4
    assert loaded.description["age_repairs"] == {"03-Sep": 1, "19-Oct": 1, "9-Mar": 1, "Oct-19": 1}
    assert "repaired 4 spreadsheet-mangled age bins" in caplog.text


def test_fairface_missing_images_become_failures(tmp_path):
    root = make_fairface(tmp_path / "ff", missing=("val/2.jpg", "val/5.jpg"))
    loaded = load_source(f"fairface:{root}")
    assert loaded.faces.height == 12
    assert loaded.failures.columns == ["key", "image", "reason"]
    assert sorted(loaded.failures["key"]) == ["val/2.jpg", "val/5.jpg"]
    assert set(loaded.failures["reason"]) == {"image file not found"}
    assert loaded.description["failures"] == 2


def test_fairface_unknown_label_names_the_allowed_ones(tmp_path):
    rows = [{"file": "val/1.jpg", "age": "20-29", "gender": "Male", "race": "White", "service_test": "False"},
            {"file": "val/2.jpg", "age": "20-29", "gender": "Male", "race": "Asian", "service_test": "False"}]
    root = make_fairface(tmp_path / "ff", val_rows=rows)
    with pytest.raises(InputError) as err:
        load_source(f"fairface:{root}")
    message = str(err.value)
    assert "fairface_label_val.csv" in message and "'Asian'" in message and "val/2.jpg" in message
    assert all(name in message for name in FAIRFACE_RACE)


@pytest.mark.parametrize("column", ["race", "file", "service_test"])
def test_fairface_missing_column_names_the_file(tmp_path, column):
    root = make_fairface(tmp_path / "ff")
    labels = pl.read_csv(root / "fairface_label_val.csv").drop(column)
    labels.write_csv(root / "fairface_label_val.csv")
    with pytest.raises(InputError, match=rf"fairface_label_val.csv: missing column\(s\) \['{column}'\]"):
        load_source(f"fairface:{root}")


def test_fairface_empty_and_unusable_sources_are_errors(tmp_path):
    root = make_fairface(tmp_path / "ff")
    (root / "fairface_label_val.csv").write_text("file,age,gender,race,service_test\n")
    with pytest.raises(InputError, match="no items"):
        load_source(f"fairface:{root}")
    rows = [{"file": "val/1.jpg", "age": "3-9", "gender": "Male", "race": "White", "service_test": "True"}]
    root = make_fairface(tmp_path / "ff2", val_rows=rows, missing=("val/1.jpg",))
    with pytest.raises(InputError, match=r"no items; 1 rejected \(1 x image file not found\)"):
        load_source(f"fairface:{root}")
    with pytest.raises(InputError, match="fairface_label_train.csv not found"):
        load_source(f"fairface:{tmp_path}", SourceOptions(split="train"))
    with pytest.raises(InputError, match="no such directory"):
        load_source(f"fairface:{tmp_path / 'absent'}")


def test_fairface_duplicate_or_empty_files_are_errors(tmp_path):
    rows = [{"file": "val/1.jpg", "age": "3-9", "gender": "Male", "race": "White", "service_test": "True"}] * 2
    root = make_fairface(tmp_path / "ff", val_rows=rows)
    with pytest.raises(InputError, match="more than once.*val/1.jpg"):
        load_source(f"fairface:{root}")
    rows = [dict(rows[0]), dict(rows[0], file="")]
    root = make_fairface(tmp_path / "ff2", val_rows=rows, missing=("",))
    with pytest.raises(InputError, match=r"column 'file' is empty on line\(s\) \[3\]"):
        load_source(f"fairface:{root}")


# --- Chicago Face Database --------------------------------------------------------------------

def test_cfd_names_give_labels(tmp_path):
    root = make_cfd(tmp_path / "cfd")
    loaded = load_source(f"cfd:{root}")
    faces = loaded.faces
    check_table(faces, "cfd")
    assert faces.height == 8 and set(faces["expression"]) == {"N"}  # neutral by default
    rows = {name: subset for subset, name in CFD_NAMES}
    for face in faces.iter_rows(named=True):
        name = face["key"].rsplit("/", 1)[1]
        code = name.split("-")[1]
        assert face["key"].split("/")[0] == face["subset"] == rows[name]
        assert (face["race"], face["race_raw"]) == (CFD_RACE[code[0]], code[0])
        assert (face["gender"], face["gender_raw"]) == (GENDER[code[1]], code[1])
        assert face["model"] == "-".join(name.split("-")[1:3])
    india = faces.filter(pl.col("key").str.contains("CFD-IM-634-047-1-N"))
    assert india.select("race", "gender", "image_number", "image_variant").row(0) == ("indian", "male", "047", "1")
    mixed = faces.filter(pl.col("subset") == "CFD-MR")
    assert set(mixed["race"]) == {"multiracial"} and set(mixed["gender"]) == {"female", "male"}


def test_cfd_expressions_and_bad_names(tmp_path):
    root = make_cfd(tmp_path / "cfd")
    write_image(root / "Images" / "CFD" / "misc" / "portrait.jpg")
    (root / "Images" / "CFD" / "notes.txt").write_text("not an image")
    every = load_source(f"cfd:{root}", SourceOptions(expressions=("all",)))
    assert every.faces.height == 10
    assert every.failures["key"].to_list() == ["CFD/misc/portrait.jpg"]
    assert "does not follow CFD-{race}{gender}" in every.failures["reason"][0]
    happy = load_source(f"cfd:{root / 'Images'}", SourceOptions(expressions="HC")).faces
    assert happy["key"].to_list() == ["CFD/AF-200/CFD-AF-200-229-HC.jpg"]
    assert every.description["expressions_found"] == {"A": 1, "HC": 1, "N": 8}


def test_cfd_unknown_codes_name_the_allowed_ones(tmp_path):
    root = make_cfd(tmp_path / "cfd", names=[("CFD", "CFD-XF-200-228-N.jpg")])
    with pytest.raises(InputError, match=r"race code.*\['X'\].*allowed: A, B, L, W, M, I"):
        load_source(f"cfd:{root}")
    root = make_cfd(tmp_path / "cfd2", names=[("CFD", "CFD-AF-200-228-Q.jpg")])
    with pytest.raises(InputError, match=r"expression.*\['Q'\].*allowed: N, A, F, HC, HO"):
        load_source(f"cfd:{root}")
    root = make_cfd(tmp_path / "cfd3", names=[("CFD", "CFD-AF-200-229-HC.jpg")])
    with pytest.raises(InputError, match=r"expressions N\): the source has no items"):
        load_source(f"cfd:{root}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no Chicago Face Database images"):
        load_source(f"cfd:{tmp_path / 'empty'}")


def norming_sheets(india_trust: float = 9.0) -> dict:
    return {
        "CFD U.S. Norming Data": [
            {"Target": "x", "Model": "AF-200", "EthnicitySelf": "A", "AgeSelf": 24, "Threatening": 1.5},
            {"Target": "x", "Model": "BM-001", "EthnicitySelf": "B", "AgeSelf": 31, "Threatening": 2.25},
            {"Target": "x", "Model": "WM-012", "EthnicitySelf": "W", "AgeSelf": None, "Threatening": 3.0},
        ],
        "CFD-MR U.S. Norming Data": [{"Model": "MF-300", "MultiProb": 0.8}, {"Model": "MM-301", "MultiProb": 0.6}],
        "CFD-I U.S. Norming Data": [{"Model": "IF601-519", "Trustworthy": 4.0}],
        "CFD-I INDIA Norming Data": [{"Model": "IF601-519", "Trustworthy": india_trust}],
    }


def test_cfd_norming_workbook_joins_on_model(tmp_path):
    root = make_cfd(tmp_path / "cfd")
    book = write_norming_workbook(tmp_path / "CFD 3.0 Norming Data and Codebook.xlsx", norming_sheets())
    loaded = load_source(f"cfd:{root}", SourceOptions(norming=str(book)))
    faces = loaded.faces
    check_table(faces, "cfd")
    by_model = {r["model"]: r for r in faces.iter_rows(named=True)}
    assert by_model["AF-200"]["AgeSelf"] == 24 and by_model["BM-001"]["Threatening"] == 2.25
    assert by_model["AF-200"]["EthnicitySelf"] == "A" and by_model["WM-012"]["AgeSelf"] is None
    assert by_model["MF-300"]["MultiProb"] == 0.8 and by_model["MF-300"]["norming_sheet"] == "CFD-MR U.S. Norming Data"
    assert by_model["IF-601"]["Trustworthy"] == 4.0
    assert by_model["LF-203"]["norming_sheet"] is None and by_model["IM-634"]["Trustworthy"] is None
    assert faces["Threatening"].dtype == pl.Float64 and faces["EthnicitySelf"].dtype == pl.Utf8
    norming = loaded.description["norming"]
    assert norming["unmatched_models"] == ["IM-634", "LF-203"] and norming["matched"] == 6
    assert str(book) in loaded.description["label_files"]
    india = load_source(f"cfd:{root}", SourceOptions(norming=str(book), norming_raters="india")).faces
    assert india.filter(pl.col("model") == "IF-601")["Trustworthy"].to_list() == [9.0]


def test_cfd_bad_norming_workbooks(tmp_path):
    root = make_cfd(tmp_path / "cfd")
    with pytest.raises(InputError, match="norming workbook .* not found"):
        load_source(f"cfd:{root}", SourceOptions(norming=str(tmp_path / "absent.xlsx")))
    (tmp_path / "fake.xlsx").write_text("model,x\n")
    with pytest.raises(InputError, match=r"fake.xlsx: not a readable .xlsx workbook"):
        load_source(f"cfd:{root}", SourceOptions(norming=str(tmp_path / "fake.xlsx")))
    other = write_norming_workbook(tmp_path / "other.xlsx", {"Sheet A": [{"Model": "AF-200"}]})
    with pytest.raises(InputError, match="none of the CFD norming sheets.*Sheet A"):
        load_source(f"cfd:{root}", SourceOptions(norming=str(other)))
    keyless = write_norming_workbook(tmp_path / "keyless.xlsx", {"CFD U.S. Norming Data": [{"Target": "AF-200"}]})
    with pytest.raises(InputError, match="no header row with a 'Model' column"):
        load_source(f"cfd:{root}", SourceOptions(norming=str(keyless)))


# --- folder + labels CSV ----------------------------------------------------------------------

def test_folder_real_faces_minno():
    folder = shared_path("data", "faces-minno")
    loaded = load_source(f"folder:{folder}")
    faces = loaded.faces
    check_table(faces, "folder")
    rows = read_rows(folder / "labels.csv")
    assert faces.height == len(rows) == 72 and loaded.failures.height == 0
    assert table.attributes(faces) == ["race", "gender", "age_group"]
    by_key = {r["file"]: r for r in rows}
    for face in faces.iter_rows(named=True):
        row = by_key[face["key"]]
        assert face["race"] == row["race"].lower() and face["race_raw"] == row["race"]
        assert face["gender"] == (GENDER[row["gender"]] if row["gender"] else None)
        assert face["age_group"] == (row["age_group"] or None)
    assert loaded.description["label_vocabulary"] == {"race": "known", "gender": "known", "age_group": "open"}
    assert set(faces["race"]) == {"black", "white"}


def test_folder_generated_layout(tmp_path):
    rows = [{"file": f"img/{i}.png", "Race": race, "Gender": gender, "Hair Colour": hair, "photo set": "A"}
            for i, (race, gender, hair) in enumerate([("W", "M", "Dark Brown"), ("Black", "F", " blond "),
                                                      ("East Asian", "female", "Dark Brown"),
                                                      ("Caucasian", "Man", "red")])]
    root = make_folder(tmp_path / "f", rows, missing=("img/3.png",))
    loaded = load_source(f"folder:{root}")
    faces = loaded.faces
    check_table(faces, "folder")
    assert table.attributes(faces) == ["race", "gender", "hair_colour", "photo_set"]
    assert faces["race"].to_list() == ["white", "black", "east_asian"]
    assert faces["gender"].to_list() == ["male", "female", "female"]
    assert faces["hair_colour"].to_list() == ["dark_brown", "blond", "dark_brown"]
    assert faces["hair_colour_raw"].to_list() == ["Dark Brown", "blond", "Dark Brown"]
    assert loaded.failures.rows() == [("img/3.png", str(root / "img/3.png"), "image file not found")]
    chosen = load_source(f"folder:{root}", SourceOptions(attributes=("race",))).faces
    assert table.attributes(chosen) == ["race"] and chosen["photo_set"].to_list() == ["A"] * 3


def test_folder_ages_in_years_go_into_the_canonical_bins(tmp_path):
    years = {"a.png": "0", "b.png": "2.5", "c.png": "3", "d.png": "19", "e.png": "45", "f.png": "70",
             "g.png": "96", "h.png": "30-39"}
    expected = {"a.png": "0-2", "b.png": "0-2", "c.png": "3-9", "d.png": "10-19", "e.png": "40-49",
                "f.png": "70+", "g.png": "70+", "h.png": "30-39"}
    root = make_folder(tmp_path / "f", [{"file": f, "Age": a} for f, a in years.items()])
    loaded = load_source(f"folder:{root}")
    assert dict(loaded.faces.select("key", "age").iter_rows()) == expected
    assert loaded.description["label_vocabulary"] == {"age": "binned"}
    make_folder(tmp_path / "g", [{"file": "a.png", "age": "34"}, {"file": "b.png", "age": "-1"}])
    with pytest.raises(InputError, match=r"unknown value\(s\) \['-1'\].*ages in years"):
        load_source(f"folder:{tmp_path / 'g'}")


def test_folder_mixed_known_and_unknown_values(tmp_path):
    rows = [{"file": "a.png", "race": "White"}, {"file": "b.png", "race": "Whte"}]
    root = make_folder(tmp_path / "f", rows)
    with pytest.raises(InputError, match=r"column 'race' mixes known race labels.*\['Whte'\].*allowed:.*white") as err:
        load_source(f"folder:{root}")
    assert "label_map" in str(err.value)
    mapping = write_csv(tmp_path / "map.csv", [{"attribute": "race", "raw": "Whte", "group": "white"}])
    faces = load_source(f"folder:{root}", SourceOptions(label_map=str(mapping))).faces
    assert faces["race"].to_list() == ["white", "white"]


def test_folder_bad_inputs(tmp_path):
    root = make_folder(tmp_path / "f", [{"file": "a.png", "race": "White"}])
    write_csv(root / "labels.csv", [{"name": "a.png", "race": "White"}])
    with pytest.raises(InputError, match=r"labels.csv: missing column\(s\) \['file'\]"):
        load_source(f"folder:{root}")
    root = make_folder(tmp_path / "g", [{"file": "a.png", "Key": "x"}])
    with pytest.raises(InputError, match=r"\['Key'\] clash"):
        load_source(f"folder:{root}")
    write_csv(root / "labels.csv", [{"file": "a.png", "race": "White"}])
    with pytest.raises(InputError, match=r"no label column\(s\) \['age'\]"):
        load_source(f"folder:{tmp_path / 'g'}", SourceOptions(attributes=("age",)))
    (tmp_path / "h").mkdir()
    (tmp_path / "h" / "labels.csv").write_text("file,race\n")
    with pytest.raises(InputError, match="no items"):
        load_source(f"folder:{tmp_path / 'h'}")
    with pytest.raises(InputError, match="label file .*other.csv not found"):
        load_source(f"folder:{tmp_path / 'h'}", SourceOptions(labels=str(tmp_path / "other.csv")))


def test_folder_labels_option_reads_another_csv(tmp_path):
    root = make_folder(tmp_path / "f", [{"file": "a.png", "gender": "F"}, {"file": "b.png", "gender": "M"}])
    write_csv(tmp_path / "elsewhere.csv", [{"file": "b.png", "gender": "Female"}])
    faces = load_source(f"folder:{root}", SourceOptions(labels=str(tmp_path / "elsewhere.csv"))).faces
    assert faces.select("key", "gender").rows() == [("b.png", "female")]


# --- clip-retrieval embeddings ----------------------------------------------------------------

def embeddings_case(tmp_path, scale: float = 3.0):
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(7, 5)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True) / scale
    names = ["g.jpg", "c.jpg", "a.jpg", "f.jpg", "b.jpg", "e.jpg", "d.jpg"]
    write_image(tmp_path / "emb" / "a.jpg")
    meta = {"image_path": names, "caption": ["x"] * 7, "race": ["White", "Black"] * 3 + ["Indian"],
            "age": [20, 30, 40, 50, 60, 70, 80]}
    return make_embeddings(tmp_path / "emb", vectors, meta, parts=3), vectors, names


def test_embeddings_rows_stay_aligned(tmp_path):
    root, vectors, names = embeddings_case(tmp_path)
    loaded = load_source(f"embeddings:{root}")
    faces = loaded.faces
    check_table(faces, "embeddings")
    assert faces["key"].to_list() == sorted(names)
    assert loaded.vectors.dtype == np.float32 and loaded.vectors.shape == (7, 5)
    expected = {n: v / np.linalg.norm(v) for n, v in zip(names, vectors)}
    for key, vector in zip(faces["key"], loaded.vectors):
        np.testing.assert_allclose(vector, expected[key], atol=1e-6)
    assert table.attributes(faces) == ["race", "age"] and "caption" not in faces.columns
    assert faces.filter(pl.col("key") == "g.jpg").select("race", "age", "age_raw").row(0) == ("white", "20-29", "20")
    assert faces.filter(pl.col("key") == "d.jpg")["age"].to_list() == ["70+"]
    assert faces["image"].to_list() == [str(root / "a.jpg")] + [""] * 6
    assert loaded.description["vectors"] == {"dim": 5, "parts": 3, "normalised_on_load": True}
    unit = load_source(f"embeddings:{embeddings_case(tmp_path / 'u', scale=1.0)[0]}")
    assert unit.description["vectors"]["normalised_on_load"] is False


def test_embeddings_zero_vectors_are_failures(tmp_path):
    vectors = np.eye(4, dtype=np.float32)
    vectors[2] = 0
    vectors[3, 0] = np.nan
    root = make_embeddings(tmp_path / "emb", vectors, {"image_path": list("abcd"), "race": ["White"] * 4}, parts=1)
    loaded = load_source(f"embeddings:{root}")
    assert loaded.faces["key"].to_list() == ["a", "b"] and loaded.vectors.shape == (2, 4)
    assert loaded.failures["key"].to_list() == ["c", "d"]


def test_embeddings_bad_layouts(tmp_path):
    root, _, _ = embeddings_case(tmp_path)
    (root / "metadata" / "metadata_1.parquet").unlink()
    with pytest.raises(InputError, match="without their partner file.*img_emb_1.npy"):
        load_source(f"embeddings:{root}")
    pl.DataFrame({"image_path": ["x"]}).write_parquet(root / "metadata" / "metadata_1.parquet")
    with pytest.raises(InputError, match=r"img_emb_1.npy has \d rows but .*metadata_1.parquet has 1"):
        load_source(f"embeddings:{root}")
    with open(root / "img_emb" / "img_emb_1.npy", "wb") as fh:
        np.save(fh, np.array([{"payload": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match="not a readable numeric .npy"):
        load_source(f"embeddings:{root}")
    other, _, _ = embeddings_case(tmp_path / "o")
    for part in (other / "metadata").iterdir():
        pl.read_parquet(part).drop("image_path").write_parquet(part)
    with pytest.raises(InputError, match="no image_path or key column"):
        load_source(f"embeddings:{other}")
    (tmp_path / "none").mkdir()
    with pytest.raises(InputError, match="no img_emb"):
        load_source(f"embeddings:{tmp_path / 'none'}")
