"""Taxonomy data and loaders: So-B-IT versions, user word lists, templates, articles, axes."""

from __future__ import annotations

import csv

import numpy as np
import polars as pl
import pytest

import taxonomy as tx
from engine.errors import InputError
from taxonomy import axes
from tests.conftest import shared_path


def write(path, text: str):
    path.write_text(text, encoding="utf-8")
    return path


# --- So-B-IT -------------------------------------------------------------------------------------

def test_sobit_base_matches_the_public_reconstruction():
    source = shared_path("taxonomy", "sobit_public_variants.csv")
    with open(source, newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r["in_fairclip_synthfairclip"] == "1"]
    words = tx.load_taxonomy("sobit")
    assert words.columns == ["category", "word", "pos"]
    assert list(words.select("category", "word").iter_rows()) == [(r["category"], r["word"]) for r in rows]
    assert words["pos"].to_list() == [r["pos_fairclip"].lower() for r in rows]
    assert words["category"].n_unique() == 9


def test_sobit_keeps_words_that_sit_in_two_categories():
    words = tx.load_taxonomy("sobit")
    doubled = words.group_by("word").agg(pl.col("category").n_unique()).filter(pl.col("category") > 1)
    assert sorted(doubled["word"]) == ["aggressive", "lazy", "primitive", "radical", "savage"]
    assert words.height == 405 and words["word"].n_unique() == 400


@pytest.mark.parametrize("version, column", [("ameliagmz", "in_ameliagmz"),
                                             ("broken_mirror", "in_intervisions_broken_mirror")])
def test_other_sobit_versions(version, column):
    source = shared_path("taxonomy", "sobit_public_variants.csv")
    with open(source, newline="", encoding="utf-8") as fh:
        expected = [(r["category"], r["word"]) for r in csv.DictReader(fh) if r[column] == "1"]
    loaded = tx.load(f"sobit:{version}")
    assert list(loaded.words.select("category", "word").iter_rows()) == expected
    assert set(loaded.words["pos"]) <= {"adjective", "noun"}  # words the base lacks are prompted as nouns


def test_unknown_sobit_version_names_the_versions():
    with pytest.raises(InputError, match="base.*ameliagmz.*broken_mirror"):
        tx.load("sobit:official")


def test_hash_depends_on_content_not_on_file_layout(tmp_path):
    single = write(tmp_path / "words.csv", "category,word,pos\njobs,nurse,noun\njobs,pilot,noun\n")
    folder = tmp_path / "dir"
    folder.mkdir()
    write(folder / "jobs.txt", "# occupations\nnurse\n\npilot\n")
    assert tx.load(str(single)).sha256 == tx.load(str(folder)).sha256
    assert tx.load("sobit").sha256 != tx.load("sobit:broken_mirror").sha256


# --- user taxonomies ------------------------------------------------------------------------------

def test_user_csv_with_optional_columns(tmp_path):
    path = write(tmp_path / "t.csv", "\ufeffWord, Category ,pos,article\n"
                                     "  honest   broker ,trust,NOUN,\nhonour,trust,noun,an\nkind,traits,adjective,\n")
    loaded = tx.load(str(path))
    assert loaded.words.rows() == [("trust", "honest broker", "noun", ""), ("trust", "honour", "noun", "an"),
                                   ("traits", "kind", "adjective", "")]
    assert tx.load_taxonomy(str(path)).columns == ["category", "word", "pos"]


def test_directory_of_files_takes_categories_from_file_names(tmp_path):
    write(tmp_path / "crime.txt", "thief\n# a comment\nsmuggler\n")
    write(tmp_path / "mixed.csv", "word,pos\nkind,adjective\n")
    write(tmp_path / "other.csv", "category,word\nwealth,rich\n")
    write(tmp_path / "notes.md", "ignored")
    words = tx.load_taxonomy(str(tmp_path))
    assert words.rows() == [("crime", "thief", "noun"), ("crime", "smuggler", "noun"),
                            ("mixed", "kind", "adjective"), ("wealth", "rich", "noun")]


@pytest.mark.parametrize("text, message", [
    ("category,word\njobs,nurse\njobs,   \n", r"t\.csv:3: empty word"),
    ("category,word,colour\njobs,nurse,red\n", r"t\.csv:1: unknown column 'colour'; allowed columns: category, word, pos, article"),
    ("category,word\njobs,nurse\njobs,pilot\njobs,Nurse\n", r"t\.csv:4: duplicate word 'Nurse' in category 'jobs' \(first at .*t\.csv:2\)"),
    ("category,word,pos\njobs,nurse,verb\n", r"t\.csv:2: unknown pos 'verb'"),
    ("category,word\njobs,nurse,extra\n", r"t\.csv:2: expected 2 fields"),
    ("word\nnurse\n", r"t\.csv:1: missing column 'category'"),
    (",word\n,nurse\n", r"t\.csv:1: unknown column ''"),
    ("category,word,word\njobs,a,b\n", r"column 'word' appears more than once"),
    ("", r"t\.csv: the file is empty"),
    ("category,word\n", r"header but no words"),
    ("category,word\n  ,nurse\n", r"t\.csv:2: empty category"),
])
def test_bad_user_csv_names_file_and_line(tmp_path, text, message):
    path = write(tmp_path / "t.csv", text)
    with pytest.raises(InputError, match=message):
        tx.load(str(path))


def test_duplicates_across_files_of_a_directory(tmp_path):
    write(tmp_path / "a.csv", "category,word\njobs,nurse\n")
    write(tmp_path / "b.csv", "category,word\njobs,nurse\n")
    with pytest.raises(InputError, match=r"b\.csv:2: duplicate word 'nurse'.*a\.csv:2"):
        tx.load(str(tmp_path))


def test_missing_taxonomy_and_empty_directory(tmp_path):
    with pytest.raises(InputError, match="neither 'sobit'"):
        tx.load(str(tmp_path / "absent.csv"))
    with pytest.raises(InputError, match="no .csv or .txt files"):
        tx.load(str(tmp_path))


# --- templates and articles ----------------------------------------------------------------------

@pytest.mark.parametrize("word, article", [
    ("terrorist", "a"), ("addict", "an"), ("urban", "an"), ("unemployed", "an"), ("uninsured", "an"),
    ("university student", "a"), ("European", "a"), ("one-eyed", "a"), ("honest", "an"), ("hour", "an"),
    ("CEO", "a"), ("TV presenter", "a"), ("FBI agent", "an"), ("MP", "an"), ("Karen", "a"), ("hacker", "a"),
])
def test_indefinite_article(word, article):
    assert tx.indefinite_article(word) == article


def test_sobit_templates_follow_the_public_reimplementation():
    words = pl.DataFrame({"category": ["c", "c", "c"], "word": ["lazy", "engineer", "immigrant"],
                          "pos": ["adjective", "noun", "noun"], "article": ["", "", ""]})
    prompts = tx.build_prompts(words, tx.load_templates("sobit"))
    assert prompts["text"].to_list() == ["a photo of a lazy person", "a photo of an engineer",
                                         "a photo of an immigrant"]
    assert prompts["query_template"].unique().to_list() == ["sobit"]
    assert prompts.schema == pl.Schema(tx.prompts.PROMPT_SCHEMA)


def test_article_override_and_capitalised_article():
    words = pl.DataFrame({"category": ["c"], "word": ["herb"], "pos": ["noun"], "article": ["an"]})
    berg = tx.build_prompts(words, tx.load_templates("berg"))
    assert "An herb person" in berg["text"].to_list() and "This person is herb" in berg["text"].to_list()
    assert berg.height == 11 and berg["query_id"].unique().to_list() == [0]


def test_ensemble_and_each_modes_key_queries():
    words = tx.load("sobit").words
    ensemble = tx.build_prompts(words, tx.load_templates("portrait"), "ensemble")
    each = tx.build_prompts(words, tx.load_templates("portrait"), "each")
    assert ensemble.height == each.height == 2 * words.height
    assert ensemble["query_id"].n_unique() == words.height
    assert each["query_id"].n_unique() == 2 * words.height
    lazy = each.filter(pl.col("word") == "lazy")
    assert lazy["query_id"].n_unique() == 4  # two categories x two templates
    assert sorted(set(lazy["query_template"])) == ["portrait/photo", "portrait/portrait"]


def test_query_vectors_average_normalised_embeddings():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(5, 4)).astype(np.float32) * np.array([[1], [5], [0.1], [2], [3]], np.float32)
    ids = np.array([0, 0, 1, 1, 1])
    result = tx.query_vectors(vectors, ids)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    expected = np.stack([unit[:2].mean(0), unit[2:].mean(0)])
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("text, message", [
    ("id,pos,template\nx,noun,a photo of {article} person\n", "exactly once"),
    ("id,pos,template\nx,noun,a {thing} of {word}\n", "no other placeholder"),
    ("id,pos,template\nx,noun,{article} young {word}\n", "directly before"),
    ("id,pos,template\nx,verb,{word}\n", "pos in"),
    ("id,template\nx,{word}\n", "lacks column"),
])
def test_bad_template_files(tmp_path, text, message):
    path = write(tmp_path / "mine.csv", text)
    with pytest.raises(InputError, match=message):
        tx.load_templates(str(path))


def test_template_set_without_a_pos_is_an_error(tmp_path):
    path = write(tmp_path / "adj.csv", "id,pos,template\np,adjective,a {word} person\n")
    words = pl.DataFrame({"category": ["c"], "word": ["nurse"], "pos": ["noun"], "article": [""]})
    with pytest.raises(InputError, match="no template for pos 'noun'"):
        tx.build_prompts(words, tx.load_templates(str(path)))
    with pytest.raises(InputError, match="built-in set"):
        tx.load_templates("nonexistent")


def test_words_without_tokens_uses_the_tokenizer():
    vocabulary = {"nurse": 5, "pilot": 6}

    def tokenize(texts):
        rows = np.zeros((len(texts), 4), dtype=np.int64)
        for i, text in enumerate(texts):
            tokens = [vocabulary[t] for t in text.split() if t in vocabulary]
            rows[i, :len(tokens) + 2] = [1, *tokens, 2]
        return rows

    assert tx.words_without_tokens(["nurse", "&nbsp;", "pilot", "???"], tokenize) == ["&nbsp;", "???"]


# --- axes ----------------------------------------------------------------------------------------

def test_axes_cover_the_canonical_groups_and_coarsenings():
    assert axes.group_order("race")[:7] == ["white", "black", "latino_hispanic", "east_asian",
                                            "southeast_asian", "indian", "middle_eastern"]
    assert {"asian", "multiracial"} <= set(axes.group_order("race"))
    assert axes.group_order("age") == ["0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "70+"]
    assert axes.coarsenings() == {"race4": "race", "age3": "age"}
    race4 = axes.coarse_map("race4")
    assert race4["east_asian"] == race4["southeast_asian"] == race4["asian"] == "asian"
    assert race4["latino_hispanic"] is None and race4["middle_eastern"] is None
    assert set(axes.coarse_map("age3").values()) == {"0-19", "20-59", "60+"}


def test_axes_groups_match_the_dataset_label_map():
    labels = pl.read_csv(tx.DATA_DIR / "labels.csv", infer_schema_length=0) if (tx.DATA_DIR / "labels.csv").exists() else None
    if labels is None:
        pytest.skip("taxonomy/labels.csv (the face sources' label map) is not there yet")
    for attribute, group in labels.select("attribute", "group").unique().iter_rows():
        assert group in axes.group_order(attribute), f"{attribute}={group} missing from axes.csv"


def test_lexicon_groups_are_one_per_face_group():
    linked = axes.lexicon_groups()
    assert linked.filter(pl.len().over("attribute", "group") > 1).is_empty()
    assert ("race", "east_asian", "race", "race/asian") in linked.rows()
    assert ("gender", "female", "gender", "gender/female") in linked.rows()


def test_lexicon_groups_exist_in_the_caption_lexicon():
    lexicon = tx.DATA_DIR / "lexicon.csv"
    if not lexicon.exists():
        pytest.skip("taxonomy/lexicon.csv (the caption scanner's lexicon) is not there yet")
    known = set(pl.read_csv(lexicon, infer_schema_length=0).select("axis", "group").iter_rows())
    for attribute, group, axis, lexicon_group in axes.lexicon_groups().iter_rows():
        prefix, _, name = lexicon_group.partition("/")  # "race/white" is group white on axis race
        assert prefix == axis and (axis, name) in known, f"{attribute}={group} -> {lexicon_group} not in lexicon.csv"
