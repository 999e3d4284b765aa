"""Embedding: model specs, weights, exact truncated text encoding, image decoding and failures."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from helpers_index import TINY, make_images, tiny_encoder, tiny_spec

from engine.errors import InputError
from engine.faces.embed import Encoder, ModelSpec
from engine.faces.images import decode_image

PROMPTS = ["a photo of a person", "a photo of an engineer", "x",
           "a photo of a very very very very long and detailed description of a person " * 3,
           "a photo of a cute person", "a photo of an honest"]


def test_spec_needs_exactly_one_weights_source():
    with pytest.raises(InputError, match="exactly one"):
        ModelSpec("ViT-B-32")
    with pytest.raises(InputError, match="exactly one"):
        ModelSpec("ViT-B-32", pretrained="openai", checkpoint="/x.pt")
    assert ModelSpec("ViT-B-32", pretrained="None").random_weights


def test_random_weights_are_flagged_and_reproducible():
    described = tiny_spec().describe()
    assert described["random_weights"] is True and "RANDOM WEIGHTS" in described["warning"]
    again = Encoder.load(tiny_spec(), device="cpu")
    np.testing.assert_array_equal(again.encode_texts(PROMPTS), tiny_encoder().encode_texts(PROMPTS))


def test_unknown_model_and_tag_name_the_alternatives():
    with pytest.raises(InputError, match="unknown open_clip model"):
        Encoder.load(ModelSpec("ViT-Q-99", pretrained="none"))
    with pytest.raises(InputError, match="known tags: .*laion2b_s34b_b79k"):
        Encoder.load(ModelSpec("ViT-B-32", pretrained="no-such-tag"))


def test_truncated_text_encoding_equals_plain_encode_text():
    encoder = tiny_encoder()
    assert encoder.text_tower is not None  # the fast path is in use
    fast, plain = encoder.encode_texts(PROMPTS), encoder.encode_texts_plain(PROMPTS)
    assert fast.dtype == np.float32 and fast.shape == (len(PROMPTS), 64)
    assert np.abs(fast - plain).max() < 1e-4
    np.testing.assert_allclose(np.linalg.norm(fast, axis=1), 1, atol=1e-5)
    # order follows the input, whatever batches the lengths were sorted into
    assert np.abs(encoder.encode_texts(PROMPTS[::-1], batch_size=2) - fast[::-1]).max() < 1e-5


def _custom_config(tmp_path, name: str, **text_cfg) -> str:
    from engine.faces.models import MODEL_CONFIG_DIR

    config = json.loads((MODEL_CONFIG_DIR / f"{TINY}.json").read_text())
    config["custom_text"] = True
    config["text_cfg"].update(text_cfg)
    (tmp_path / f"{name}.json").write_text(json.dumps(config))
    import open_clip

    open_clip.add_model_config(tmp_path / f"{name}.json")
    return name


@pytest.mark.parametrize("text_cfg, fast", [({}, True), ({"pool_type": "last"}, False),
                                            ({"no_causal_mask": True}, False)])
def test_custom_text_towers_fast_where_exact_else_plain(tmp_path, text_cfg, fast):
    name = _custom_config(tmp_path, f"vlaudit-test-custom-{len(text_cfg)}-{fast}", **text_cfg)
    encoder = Encoder.load(ModelSpec(name, pretrained="none"), device="cpu")
    assert (encoder.text_tower is not None) == fast
    assert np.abs(encoder.encode_texts(PROMPTS) - encoder.encode_texts_plain(PROMPTS)).max() < 1e-4


def test_image_refs_match_direct_forward_and_record_failures(tmp_path):
    import torch
    from PIL import Image

    good = make_images(tmp_path / "img", 5, fmt="jpg")
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(open(good[0], "rb").read()[:300])
    not_image = tmp_path / "notes.jpg"
    not_image.write_text("hello")
    huge = tmp_path / "huge.png"
    Image.new("RGB", (300, 300)).save(huge)
    refs = [good[0], str(truncated), good[1], str(not_image), good[2], str(huge), good[3],
            str(tmp_path / "missing.jpg"), good[4]]
    encoder = tiny_encoder()
    vectors, failures = encoder.encode_image_refs(refs, batch_size=3, num_workers=1, max_pixels=50_000)
    reasons = dict(failures)
    assert sorted(reasons) == [1, 3, 5, 7]
    assert "truncated" in reasons[1].lower() and "not an image" in reasons[3]
    assert "decompression-bomb" in reasons[5] and "90,000" in reasons[5]
    assert "FileNotFoundError" in reasons[7]
    with torch.inference_mode():
        batch = torch.stack([encoder.preprocess(Image.open(p).convert("RGB")) for p in good])
        direct = torch.nn.functional.normalize(encoder.model.encode_image(batch), dim=-1).numpy()
    assert vectors.dtype == np.float32 and vectors.shape == (5, 64)
    assert np.abs(vectors - direct).max() < 1e-5
    in_process, _ = encoder.encode_image_refs(refs, batch_size=3, num_workers=0, max_pixels=50_000)
    np.testing.assert_array_equal(in_process, vectors)


def test_decode_refuses_pixels_over_the_limit(tmp_path):
    from PIL import Image

    path = tmp_path / "big.png"
    Image.new("RGB", (200, 100)).save(path)
    assert decode_image(str(path), max_pixels=20_000).size == (200, 100)
    with pytest.raises(ValueError, match="decompression-bomb guard"):
        decode_image(str(path), max_pixels=19_999)


def test_checkpoint_loads_and_is_hashed(tmp_path):
    import torch

    from engine import storage

    path = tmp_path / "tiny.pt"
    torch.save(tiny_encoder().model.state_dict(), path)
    spec = ModelSpec(TINY, checkpoint=str(path))
    assert spec.describe()["checkpoint_sha256"] == storage.sha256_file(path)
    loaded = Encoder.load(spec, device="cpu")
    assert np.abs(loaded.encode_texts(PROMPTS) - tiny_encoder().encode_texts(PROMPTS)).max() < 1e-6
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="does not fit model"):
        Encoder.load(ModelSpec(TINY, checkpoint=str(bad)))
    with pytest.raises(InputError, match="does not exist"):
        Encoder.load(ModelSpec(TINY, checkpoint=str(tmp_path / "absent.pt")))


def test_offline_missing_weights_is_a_clear_error_not_a_traceback(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
           "XDG_CACHE_HOME": str(tmp_path / "cache")}
    command = [sys.executable, "-m", "engine", "index", "build", "x", "--source", f"folder:{tmp_path}",
               "--model", "ViT-B-32", "--pretrained", "laion2b_s34b_b79k",
               "--indexes-dir", str(tmp_path / "indexes")]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "laion2b_s34b_b79k" in done.stderr and "--checkpoint FILE" in done.stderr
    assert "HF_HUB_OFFLINE" in done.stderr


def test_device_choice_on_a_machine_without_cuda():
    import torch

    from engine.faces.models import autocast_dtype, resolve_device

    if torch.cuda.is_available():
        pytest.skip("this checks the CPU-only choice; a CUDA device is present")
    assert resolve_device("auto") == "cpu" and autocast_dtype("cpu") is None
    with pytest.raises(InputError, match="CUDA is not available"):
        resolve_device("cuda")
    with pytest.raises(InputError, match="unknown device"):
        resolve_device("tpu")
    assert tiny_encoder().describe()["precision"] == "float32"
