"""Prompt encoding: truncated text batches vs open_clip's plain ``encode_text``, same run.

Target: the So-B-IT prompt set (every word x the two So-B-IT templates, "a photo of a/an {word}
person" and "a photo of a/an {word}") encodes at least 3x faster than plain ``encode_text`` on 77
padded positions, with a max absolute difference under 1e-4. A real-size text tower (ViT-B-32,
random weights: the speed does not depend on the weights) on the CPU.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

TEMPLATES = ("a photo of {article} {word} person", "a photo of {article} {word}")


def sobit_prompts() -> list[str]:
    from taxonomy import load_taxonomy
    from taxonomy.prompts import indefinite_article

    words = load_taxonomy("sobit")["word"].unique(maintain_order=True).to_list()
    return [t.format(article=indefinite_article(w), word=w) for w in words for t in TEMPLATES]


def timed(fn, *args, **kwargs):
    began = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=1, help="timed runs of each path (best kept)")
    args = parser.parse_args()

    import torch

    from engine.faces.embed import Encoder, ModelSpec

    encoder = Encoder.load(ModelSpec(args.model, pretrained="none"), device="cpu")
    prompts = sobit_prompts()
    encoder.encode_texts(prompts[:8]), encoder.encode_texts_plain(prompts[:8])  # warm up
    fast_s, plain_s = [], []
    for _ in range(args.repeats):  # alternate, so load from other processes hits both alike
        fast, seconds = timed(encoder.encode_texts, prompts, args.batch_size)
        fast_s.append(seconds)
        plain, seconds = timed(encoder.encode_texts_plain, prompts, args.batch_size)
        plain_s.append(seconds)
    longest = int((encoder.tokenizer(prompts) != 0).sum(dim=1).max())
    result = {
        "model": args.model, "prompts": len(prompts), "longest_tokens": longest,
        "context_length": int(encoder.tokenizer(prompts[:1]).shape[1]),
        "threads": torch.get_num_threads(), "plain_s": round(min(plain_s), 3),
        "truncated_s": round(min(fast_s), 3), "speedup": round(min(plain_s) / min(fast_s), 2),
        "max_abs_diff": float(np.abs(fast - plain).max()), "target_speedup": 3.0, "target_diff": 1e-4,
    }
    result["pass"] = result["speedup"] >= 3.0 and result["max_abs_diff"] < 1e-4
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
