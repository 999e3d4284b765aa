"""Image embedding on CPU: the full pipeline vs the bare model forward pass, same images, same run.

Target: ``Encoder.encode_image_refs`` (read + decode + preprocess in DataLoader worker processes,
overlapped with the model) reaches at least 0.85x the images/s of the bare forward pass on the
same images already decoded and preprocessed into tensors. Model: ViT-B-32 with random weights
(real size; speed does not depend on the weights). Images: JPEG face-crop-sized photos-like
pictures (448x448 like FairFace crops), written to a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def write_images(folder: Path, count: int, size: int, seed: int = 0) -> list[str]:
    """Smooth colour fields with noise: decode cost like a real photo, not like flat colour."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    grid = np.linspace(0, 1, size, dtype=np.float32)
    paths = []
    for i in range(count):
        base = rng.uniform(0, 255, size=(3, 3))
        image = (base[:, 0, None, None] * grid[None, :, None] + base[:, 1, None, None] * grid[None, None, :]
                 + base[:, 2, None, None] * 0.5) / 2
        image = image + rng.normal(0, 12, size=image.shape)
        pixels = np.clip(image, 0, 255).astype(np.uint8).transpose(1, 2, 0)
        path = folder / f"{i:05d}.jpg"
        Image.fromarray(pixels).save(path, quality=90)
        paths.append(str(path))
    return paths


def bare_forward(encoder, tensors, batch_size: int) -> float:
    """Seconds for the model alone on preprocessed tensors (normalised outputs, as the pipeline)."""
    began = time.perf_counter()
    for start in range(0, len(tensors), batch_size):
        encoder.encode_image_tensors(tensors[start:start + batch_size])
    return time.perf_counter() - began


def pipeline(encoder, refs, batch_size: int, workers: int | None) -> tuple[float, np.ndarray]:
    began = time.perf_counter()
    vectors, failures = encoder.encode_image_refs(refs, batch_size, workers)
    if failures:
        raise SystemExit(f"unexpected failures: {failures[:3]}")
    return time.perf_counter() - began, vectors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--size", type=int, default=448)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=None, help="decode processes (default: auto)")
    parser.add_argument("--repeats", type=int, default=2, help="alternating timed runs (best kept)")
    args = parser.parse_args()

    import torch

    from engine.faces.embed import Encoder, ModelSpec
    from engine.faces.images import decode_image, default_workers

    encoder = Encoder.load(ModelSpec(args.model, pretrained="none"), device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        refs = write_images(Path(tmp), args.images, args.size)
        tensors = torch.stack([encoder.preprocess(decode_image(r)) for r in refs])
        bare_forward(encoder, tensors[:args.batch_size], args.batch_size)  # warm up
        bare_s, pipe_s = [], []
        for _ in range(args.repeats):  # alternate, so load from other processes hits both alike
            bare_s.append(bare_forward(encoder, tensors, args.batch_size))
            seconds, vectors = pipeline(encoder, refs, args.batch_size, args.workers)
            pipe_s.append(seconds)
    reference = np.concatenate([encoder.encode_image_tensors(tensors[i:i + args.batch_size])
                                for i in range(0, len(tensors), args.batch_size)])
    bare_ips, pipe_ips = args.images / min(bare_s), args.images / min(pipe_s)
    result = {
        "model": args.model, "images": args.images, "image_size": args.size,
        "batch_size": args.batch_size, "torch_threads": torch.get_num_threads(),
        "decode_workers": default_workers() if args.workers is None else args.workers,
        "bare_forward_img_s": round(bare_ips, 2), "pipeline_img_s": round(pipe_ips, 2),
        "ratio": round(pipe_ips / bare_ips, 3), "target_ratio": 0.85,
        "same_vectors_max_abs_diff": float(np.abs(vectors - reference).max()),
    }
    result["pass"] = result["ratio"] >= 0.85
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
