"""Build a LAION-like caption corpus of any size by seeded resampling of the real LAION sample.

Each output row takes a real caption (../shared/data/laion-sample, 10,000 LAION-400M rows) as a
template: with probability ``--duplicates`` the caption is copied verbatim (LAION-2B-en has about
half exact duplicates), otherwise each of its whitespace-separated words is replaced, with
probability ``--replace``, by a word drawn from all the sample's words. Lengths, casing,
punctuation, HTML noise and mixed languages follow the real distribution; captions are mostly
new strings, so nothing downstream can exploit the 10,000 templates. URLs are the template's
URL plus a unique query string. Files are written like LAION's metadata parquet (URL, TEXT,
snappy), ``--rows-per-file`` rows each, in constant memory.

    python benchmarks/build_caption_corpus.py --rows 5000000 --out /tmp/captions-5m
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "laion-sample" / "laion400m_sample_10k.parquet"


def build(out: Path, rows: int, rows_per_file: int, seed: int, duplicates: float, replace: float,
          sample: Path = SAMPLE) -> list[Path]:
    """Write the corpus; skip files that already exist (a rerun completes an interrupted build)."""
    table = pq.read_table(sample, columns=["URL", "TEXT"])
    text = table["TEXT"].combine_chunks()
    urls = table["URL"].combine_chunks()
    words = pc.split_pattern(pc.fill_null(text, ""), " ")
    offsets, pool = words.offsets.to_numpy(), words.values
    lengths = np.diff(offsets)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, start in enumerate(range(0, rows, rows_per_file)):
        path = out / f"part-{index:05d}.parquet"
        paths.append(path)
        if path.exists():
            continue
        n = min(rows_per_file, rows - start)
        rng = np.random.default_rng([seed, index])
        template = rng.integers(0, len(lengths), n)
        slot_counts = lengths[template]
        new_offsets = np.concatenate([[0], np.cumsum(slot_counts)])
        slots = (np.arange(new_offsets[-1]) - np.repeat(new_offsets[:-1], slot_counts)
                 + np.repeat(offsets[template], slot_counts))
        copy = rng.random(n) < duplicates
        swap = (rng.random(len(slots)) < replace) & ~np.repeat(copy, slot_counts)
        slots[swap] = rng.integers(0, len(pool), int(swap.sum()))
        captions = pc.binary_join(pa.ListArray.from_arrays(pa.array(new_offsets.astype(np.int32)),
                                                           pool.take(pa.array(slots))), " ")
        row_ids = pa.array([f"{index}-{i}" for i in range(n)])
        url = pc.binary_join_element_wise(urls.take(pa.array(template)), row_ids, "?row=")
        tmp = path.with_suffix(".tmp")
        pq.write_table(pa.table({"URL": url, "TEXT": captions}), tmp, compression="snappy")
        tmp.replace(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--rows-per-file", type=int, default=250_000)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--duplicates", type=float, default=0.35, help="share of verbatim copies")
    parser.add_argument("--replace", type=float, default=0.3, help="share of words replaced")
    args = parser.parse_args()
    started = time.perf_counter()
    paths = build(args.out, args.rows, args.rows_per_file, args.seed, args.duplicates, args.replace)
    size = sum(p.stat().st_size for p in paths)
    print(f"{args.rows:,} captions in {len(paths)} files, {size / 1e6:.0f} MB, "
          f"{time.perf_counter() - started:.1f} s -> {args.out}")


if __name__ == "__main__":
    main()
