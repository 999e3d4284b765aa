"""The toy world generator and the tiny CLIP's training (engine.demo.world, plan, shards, train)."""

from __future__ import annotations

import json
import re
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest

from engine import storage
from engine.demo import plan
from engine.demo.spec import AXES, LEXICON, WORDS, WorldConfig
from engine.demo.world import generate_world
from engine.errors import InputError

SMALL = WorldConfig(n_faces=48, n_pairs=420, shard_size=150, failure_rate=0.05)
TIMING_FIELDS = ("duration", "start_time", "end_time")


def _digests(root: Path) -> dict[str, object]:
    """Every file's sha256; stats files compared without their timings."""
    found = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        name = str(path.relative_to(root))
        if path.name.endswith("_stats.json"):
            stats = json.loads(path.read_text())
            found[name] = {k: v for k, v in stats.items() if k not in TIMING_FIELDS}
        else:
            found[name] = storage.sha256_file(path)
    return found


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return generate_world(tmp_path_factory.mktemp("demo") / "world", SMALL, progress=False)


def test_same_config_gives_identical_files_and_another_seed_does_not(world, tmp_path):
    again = generate_world(tmp_path / "again", SMALL, progress=False)
    assert _digests(again.root) == _digests(world.root)
    other = generate_world(tmp_path / "other", WorldConfig(**{**SMALL.__dict__, "seed": 1}), progress=False)
    assert _digests(other.root)["faces/labels.csv"] != _digests(world.root)["faces/labels.csv"]


def test_an_existing_world_with_the_same_config_is_reused(world):
    before = world.truth_path.stat().st_mtime_ns
    assert generate_world(world.root, SMALL, progress=False).truth_path.stat().st_mtime_ns == before


def test_shards_follow_the_img2dataset_layout(world):
    truth = world.truth()
    shards = world.shard_paths(".tar")
    assert [p.name for p in shards] == ["00000.tar", "00001.tar", "00002.tar"]
    total_success = 0
    for shard_id, tar_path in enumerate(shards):
        table = pq.read_table(tar_path.with_suffix(".parquet"))
        assert table.schema.names == ["tint", "shape", "caption", "url", "key", "status", "error_message",
                                      "width", "height", "original_width", "original_height", "exif", "sha256"]
        assert str(table.schema.field("width").type) == "int32"
        rows = table.to_pylist()
        # img2dataset keys: shard id * 10^3 + row, zero-padded to 3 + 5 digits
        assert [r["key"] for r in rows] == [f"{shard_id * 1000 + i:08d}" for i in range(len(rows))]
        success = [r for r in rows if r["status"] == "success"]
        failed = [r for r in rows if r["status"] != "success"]
        assert failed and all(r["status"] == "failed_to_download" and r["error_message"] and r["width"] is None
                              for r in failed)
        with tarfile.open(tar_path) as tar:
            names = tar.getnames()
            assert names == [f"{r['key']}.{ext}" for r in success for ext in ("jpg", "json", "txt")]
            sample = json.loads(tar.extractfile(f"{success[0]['key']}.json").read())
            assert sample == success[0]
            assert tar.extractfile(f"{success[0]['key']}.txt").read().decode() == success[0]["caption"]
        stats = json.loads(tar_path.with_name(f"{tar_path.stem}_stats.json").read_text())
        assert (stats["count"], stats["successes"], stats["failed_to_download"]) == (len(rows), len(success), len(failed))
        total_success += len(success)
    assert total_success == truth["pairs"]["success"]


def _tokens(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def test_planted_counts_equal_an_independent_count_of_the_written_captions(world):
    """Oracle: tokenise every successful caption of the parquet files and count by hand."""
    captions = pl.concat([pl.read_parquet(p) for p in world.shard_paths(".parquet")])
    captions = captions.filter(pl.col("status") == "success")["caption"].to_list()
    counted = Counter()
    for caption in captions:
        tokens = _tokens(caption)
        bigrams = {" ".join(pair) for pair in zip(tokens, tokens[1:])}
        present = set(tokens) | bigrams
        for word in WORDS:
            for (axis, group), term in LEXICON.items():
                if word.word in present and term in present:
                    counted[(word.word, axis, group)] += 1
    for row in world.truth()["cooccurrence"]:
        assert row["n_both"] == counted[(row["word"], row["axis"], row["group"])], row


def test_planted_rates_are_exact_and_controls_are_balanced():
    config = WorldConfig(n_pairs=3000)
    pairs = plan.plan_pairs(config, np.random.default_rng(7))
    for word in WORDS:
        rows = pairs.filter(pl.col("word") == word.word)
        for axis, groups in AXES.items():
            counts = [rows.filter(pl.col(axis) == g).height for g in groups]
            if word.planted_axis == axis:
                planted = counts[groups.index(word.planted_group)]
                assert abs(planted - config.planted_rate * rows.height) <= 1, (word.word, counts)
            else:
                assert max(counts) - min(counts) <= len(plan.CELLS), (word.word, axis, counts)


def test_face_labels_follow_the_base_rates_and_load_as_a_folder_source(world):
    from engine.faces.sources import load_source

    labels = pl.read_csv(world.faces_dir / "labels.csv")
    assert labels.columns == ["file", "tint", "shape"]
    truth = world.truth()
    for axis, rates in truth["face_base_rates"].items():
        for group, rate in rates.items():
            assert abs(labels.filter(pl.col(axis) == group).height - rate * SMALL.n_faces) < 1.5
    loaded = load_source(world.face_source)
    assert loaded.faces.height == SMALL.n_faces
    assert set(loaded.faces["tint"].unique()) == set(AXES["tint"])


def test_word_lists_are_readable_by_the_taxonomy_and_lexicon_loaders(world):
    import taxonomy
    from taxonomy.lexicon import load_lexicon

    words = taxonomy.load(str(world.taxonomy)).words
    assert sorted(words["word"].to_list()) == sorted(w.word for w in WORDS)
    assert load_lexicon(str(world.lexicon)).entries.height == len(LEXICON)


@pytest.mark.parametrize("change, message", [
    ({"n_pairs": 0}, "n_pairs"), ({"planted_rate": 1.5}, "planted_rate"), ({"n_faces": 5}, "n_faces"),
])
def test_bad_world_config_is_refused(change, message):
    with pytest.raises(InputError, match=message):
        WorldConfig(**change)


def test_a_short_training_run_lowers_the_loss_and_repeats_exactly(world, tmp_path):
    import torch

    from engine.demo import model as demo_model
    from engine.demo.train import TrainConfig, evaluate_loss, load_corpus, save_checkpoint, train
    from engine.faces.models import ModelSpec, load_model

    _, preprocess = demo_model.create_model()
    images, tokens = load_corpus(world.shard_paths(), preprocess, demo_model.tokenizer())
    config = TrainConfig(epochs=3, batch_size=64, warmup_steps=5)
    first = train(images, tokens, config, progress=False)
    assert first.losses[-1] < first.initial_loss
    assert evaluate_loss(first.model, images, tokens, 64) < first.initial_loss
    second = train(images, tokens, config, progress=False)
    for (name, a), b in zip(first.model.state_dict().items(), second.model.state_dict().values()):
        assert torch.equal(a, b), name

    path = save_checkpoint(first.model, tokens, tmp_path / "demo.pt")
    other = save_checkpoint(second.model, tokens, tmp_path / "elsewhere" / "other-name.pt")
    assert storage.sha256_file(path) == storage.sha256_file(other)  # same weights, same bytes
    state = torch.load(path, weights_only=True)["state_dict"]
    assert state["token_embedding.weight"].dtype == torch.float16
    unused = torch.ones(state["token_embedding.weight"].shape[0], dtype=torch.bool)
    unused[tokens.unique()] = False
    assert not state["token_embedding.weight"][unused].any()
    loaded = load_model(ModelSpec(demo_model.MODEL_NAME, checkpoint=str(path)), device="cpu")
    assert torch.allclose(loaded.model.visual.conv1.weight, first.model.visual.conv1.weight.half().float())
