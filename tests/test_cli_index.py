"""``vlaudit index build|info|list`` and ``vlaudit query`` end to end, through a real folder source."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers_index import brute_force_top_k, make_images, tiny_encoder

from engine.cli import main
from engine.faces.index import open_index

TINY_ARGS = ["--model", "vlaudit-tiny", "--pretrained", "none"]


def _folder_dataset(root: Path, count: int = 8) -> Path:
    refs = make_images(root / "images", count)
    rows = ["file,gender,race"] + [f"images/{Path(r).name},{'Female' if i % 2 else 'Male'},"
                                   f"{'Black' if i % 3 else 'White'}" for i, r in enumerate(refs)]
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def _run_json(capsys, *argv: str) -> dict:
    code = main([*argv, "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 1  # exactly one JSON object on stdout
    return json.loads(lines[0])


@pytest.fixture
def built(tmp_path, indexes_dir, capsys):
    data = _folder_dataset(tmp_path / "data")
    result = _run_json(capsys, "index", "build", "faces", "--source", f"folder:{data}", *TINY_ARGS,
                       "--workers", "0", "--no-progress", "--indexes-dir", str(indexes_dir))
    return result


def test_build_prints_the_documented_fields(built, indexes_dir):
    assert {"name", "path", "count", "dim", "failures", "model", "pretrained"} <= set(built)
    assert built["name"] == "faces" and built["count"] == 8 and built["dim"] == 64
    assert built["failures"] == 0 and built["model"] == "vlaudit-tiny" and built["pretrained"] == "none"
    assert Path(built["path"]) == indexes_dir / "faces"
    manifest = open_index("faces", indexes_dir).manifest
    assert manifest["dataset"]["spec"].startswith("folder:")
    assert {"gender", "race"} <= set(manifest["attributes"])


def test_info_and_list(built, indexes_dir, capsys):
    info = _run_json(capsys, "index", "info", "faces", "--indexes-dir", str(indexes_dir))
    assert info["count"] == 8 and info["verified"] and info["model"]["random_weights"]
    listing = _run_json(capsys, "index", "list", "--indexes-dir", str(indexes_dir))
    assert [entry["name"] for entry in listing["indexes"]] == ["faces"]
    assert main(["index", "info", "faces", "--indexes-dir", str(indexes_dir)]) == 0
    assert "RANDOM WEIGHTS" in capsys.readouterr().out


def test_query_returns_k_hits_per_text_matching_brute_force(built, indexes_dir, capsys):
    texts = ["a photo of a doctor", "a photo of a nurse"]
    result = _run_json(capsys, "query", "faces", *texts, "-k", "3", "--indexes-dir", str(indexes_dir))
    assert [q["text"] for q in result["queries"]] == texts and result["k"] == 3
    index = open_index("faces", indexes_dir)
    _, expected = brute_force_top_k(index.vectors(), tiny_encoder().encode_texts(texts), 3)
    for query, ids in zip(result["queries"], expected, strict=True):
        assert [hit["item_id"] for hit in query["hits"]] == ids.tolist()
        assert [hit["rank"] for hit in query["hits"]] == [1, 2, 3]
        assert all({"score", "key", "gender", "race"} <= set(hit) for hit in query["hits"])
        scores = [hit["score"] for hit in query["hits"]]
        assert scores == sorted(scores, reverse=True)
    assert np.isfinite(scores).all()


@pytest.mark.parametrize("argv, message", [
    (["query", "faces", "a photo", "--model", "ViT-B-32", "--pretrained", "none"], "refusing to query"),
    (["query", "faces", "a photo", "-k", "99"], "exceeds the index size of 8"),
    (["query", "nothing", "a photo"], "no index 'nothing'"),
    (["index", "info", "nothing"], "available: faces"),
    (["index", "build", "faces", "--source", "folder:/x", *TINY_ARGS], "already exists"),
    (["index", "build", "new", "--source", "nonsense:/x", *TINY_ARGS], "KIND:PATH"),
    (["index", "build", "new", "--source", "folder:/x", "--model", "ViT-Q-1", "--pretrained", "none"],
     "unknown open_clip model"),
])
def test_bad_input_is_a_clear_error(built, indexes_dir, capsys, argv, message):
    assert main([*argv, "--indexes-dir", str(indexes_dir)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_missing_images_become_failures_not_crashes(tmp_path, indexes_dir, capsys):
    data = _folder_dataset(tmp_path / "data", count=6)
    (data / "images" / "face_002.png").write_bytes(b"garbage")
    result = _run_json(capsys, "index", "build", "broken", "--source", f"folder:{data}", *TINY_ARGS,
                       "--workers", "0", "--no-progress", "--indexes-dir", str(indexes_dir))
    assert result["count"] == 5 and result["failures"] == 1
    failures = open_index("broken", indexes_dir).failures()
    assert failures["key"].to_list() == ["images/face_002.png"]


def test_fairface_split_and_service_test_reach_the_index(tmp_path, indexes_dir, capsys):
    from helpers_faces import make_fairface

    root = make_fairface(tmp_path / "fairface", n_val=9, n_train=3)
    result = _run_json(capsys, "index", "build", "ff", "--source", f"fairface:{root}", "--split", "val",
                       "--service-test", *TINY_ARGS, "--workers", "0", "--no-progress",
                       "--indexes-dir", str(indexes_dir))
    assert result["count"] == 3  # val rows 3, 6 and 9 are the service_test subset
    index = open_index("ff", indexes_dir)
    assert set(index.faces["key"].to_list()) == {"val/3.jpg", "val/6.jpg", "val/9.jpg"}
    assert {"race", "gender", "age"} <= set(index.manifest["attributes"])
    assert "val" in json.dumps(index.manifest["dataset"])


def test_precomputed_embeddings_are_indexed_as_given(tmp_path, indexes_dir, capsys):
    from helpers_faces import make_embeddings

    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((5, 64)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    names = [f"img{i}.jpg" for i in range(5)]
    root = make_embeddings(tmp_path / "emb", vectors, {"image_path": names, "gender": ["Female", "Male"] * 2
                                                        + ["Female"]})
    result = _run_json(capsys, "index", "build", "pre", "--source", f"embeddings:{root}", *TINY_ARGS,
                       "--no-progress", "--indexes-dir", str(indexes_dir))
    assert result["count"] == 5 and result["shards"] == 0
    index = open_index("pre", indexes_dir)
    by_key = dict(zip(names, vectors, strict=True))
    for key, vector in zip(index.faces["key"].to_list(), index.vectors(), strict=True):
        np.testing.assert_allclose(vector, by_key[key], atol=1e-6)
    query = _run_json(capsys, "query", "pre", "a photo of a person", "-k", "5",
                      "--indexes-dir", str(indexes_dir))
    assert len(query["queries"][0]["hits"]) == 5


def _write_shard(path: Path, images: list[str], broken: int) -> None:
    """A webdataset shard in img2dataset's member layout (<key>.jpg, <key>.json), one image cut short."""
    import io
    import tarfile

    with tarfile.open(path, "w") as tar:
        for i, image in enumerate(images):
            data = Path(image).read_bytes()
            members = {"jpg": data[:200] if i == broken else data,
                       "json": json.dumps({"key": f"{i:09d}", "gender": ("Male", "Female")[i % 2]}).encode()}
            for ext, payload in members.items():
                info = tarfile.TarInfo(f"{i:09d}.{ext}")
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))


def test_webdataset_images_are_embedded_from_tar_members(tmp_path, indexes_dir, capsys):
    from engine.faces.images import decode_image

    _write_shard(tmp_path / "00000.tar", make_images(tmp_path / "src", 5, fmt="jpg"), broken=3)
    result = _run_json(capsys, "index", "build", "web", "--source", f"wds:{tmp_path}/*.tar", *TINY_ARGS,
                       "--attributes", "gender", "--workers", "1", "--no-progress",
                       "--indexes-dir", str(indexes_dir))
    assert result["count"] == 4 and result["failures"] == 1
    index = open_index("web", indexes_dir)
    assert all(ref.startswith("tar:") for ref in index.faces["image"].to_list())
    assert index.failures()["key"].to_list() == ["000000003"]
    encoder = tiny_encoder()
    first = encoder.preprocess(decode_image(index.faces["image"][0]))[None]
    np.testing.assert_allclose(index.vectors()[0], encoder.encode_image_tensors(first)[0], atol=1e-5)


def test_real_face_photos_build_and_query(indexes_dir, capsys):
    from conftest import shared_path

    photos = shared_path("data", "faces-minno")
    rows = (photos / "labels.csv").read_text().strip().splitlines()[1:]
    result = _run_json(capsys, "index", "build", "minno", "--source", f"folder:{photos}", *TINY_ARGS,
                       "--workers", "1", "--no-progress", "--indexes-dir", str(indexes_dir))
    assert result["count"] == len(rows) and result["failures"] == 0
    query = _run_json(capsys, "query", "minno", "a photo of a face", "-k", "5",
                      "--indexes-dir", str(indexes_dir))
    assert [hit["rank"] for hit in query["queries"][0]["hits"]] == [1, 2, 3, 4, 5]
    assert {hit["race"] for hit in query["queries"][0]["hits"]} <= {"black", "white"}
