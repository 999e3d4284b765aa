"""Tiny labelled face datasets in every source layout, generated for tests.

Plain functions (no fixtures), importable as ``from tests.helpers_faces import ...``. Images are
small random-noise pictures; each function returns what a test needs to check its result.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import http.server
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import polars as pl
from PIL import Image

FAIRFACE_RACES = ("White", "Black", "Latino_Hispanic", "East Asian", "Southeast Asian", "Indian",
                  "Middle Eastern")
FAIRFACE_AGES = ("0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "more than 70")
GENDERS = ("Male", "Female")


def write_image(path: str | os.PathLike, seed: int = 0, size: tuple[int, int] = (24, 24)) -> Path:
    """A random RGB picture; the format follows the suffix (.jpg, .png, ...)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def write_csv(path: str | os.PathLike, rows: Sequence[dict]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def fairface_rows(split: str, n: int, start: int = 1) -> list[dict]:
    """``n`` label rows cycling through every race, gender and age bin; every third is service_test."""
    return [{"file": f"{split}/{i}.jpg", "age": FAIRFACE_AGES[i % len(FAIRFACE_AGES)],
             "gender": GENDERS[i % 2], "race": FAIRFACE_RACES[i % len(FAIRFACE_RACES)],
             "service_test": "True" if i % 3 == 0 else "False"} for i in range(start, start + n)]


def make_fairface(root: str | os.PathLike, n_val: int = 14, n_train: int = 6,
                  val_rows: Sequence[dict] | None = None, missing: Sequence[str] = ()) -> Path:
    """FairFace's layout: both label CSVs and train/ val/ images (except the files in ``missing``)."""
    root = Path(root)
    splits = {"val": list(val_rows) if val_rows is not None else fairface_rows("val", n_val),
              "train": fairface_rows("train", n_train)}
    for split, rows in splits.items():
        write_csv(root / f"fairface_label_{split}.csv", rows)
        for seed, row in enumerate(rows):
            if row["file"] not in missing:
                write_image(root / row["file"], seed=seed)
    return root


CFD_NAMES = (  # (subset, file name): U.S. CFD, multiracial CFD-MR, CFD-INDIA
    ("CFD", "CFD-AF-200-228-N.jpg"), ("CFD", "CFD-AF-200-229-HC.jpg"), ("CFD", "CFD-BM-001-014-N.jpg"),
    ("CFD", "CFD-LF-203-066-N.jpg"), ("CFD", "CFD-WM-012-001-A.jpg"), ("CFD", "CFD-WM-012-002-N.jpg"),
    ("CFD-MR", "CFD-MF-300-002-N.jpg"), ("CFD-MR", "CFD-MM-301-011-N.jpg"),
    ("CFD-INDIA", "CFD-IF-601-519-N.jpg"), ("CFD-INDIA", "CFD-IM-634-047-1-N.jpg"),
)


def make_cfd(root: str | os.PathLike, names: Sequence[tuple[str, str]] = CFD_NAMES) -> Path:
    """CFD's layout ``Images/<subset>/<model>/<file>``; the model folder is taken from the name."""
    root = Path(root)
    for seed, (subset, name) in enumerate(names):
        model = "-".join(name.split("-")[1:3]) if name.startswith("CFD-") else "misc"
        write_image(root / "Images" / subset / model / name, seed=seed)
    return root


def write_norming_workbook(path: str | os.PathLike, sheets: dict[str, Sequence[dict]],
                           preamble: Sequence[str] = ("Chicago Face Database 3.0", "Norming data")) -> Path:
    """An .xlsx like CFD's: per sheet, preamble rows, a blank row, the variable ids, the model rows."""
    import openpyxl

    book = openpyxl.Workbook()
    book.remove(book.active)
    for title, rows in sheets.items():
        sheet = book.create_sheet(title)
        for line in preamble:
            sheet.append([line])
        sheet.append([])
        header = list(dict.fromkeys(k for r in rows for k in r))
        sheet.append(header)
        for row in rows:
            sheet.append([row.get(k) for k in header])
    book.save(path)
    return Path(path)


def make_folder(root: str | os.PathLike, rows: Sequence[dict], labels_name: str = "labels.csv",
                missing: Sequence[str] = ()) -> Path:
    """Images named by each row's ``file`` (except ``missing``) plus the label CSV."""
    root = Path(root)
    for seed, row in enumerate(rows):
        if row["file"] not in missing:
            write_image(root / row["file"], seed=seed)
    write_csv(root / labels_name, rows)
    return root


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@contextlib.contextmanager
def serve_directory(directory: str | os.PathLike) -> Iterator[str]:
    """Serve ``directory`` over HTTP on 127.0.0.1 (loopback only) in a thread; yield the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def img2dataset_shards(workdir: str | os.PathLike, samples: Sequence[dict], per_shard: int = 4,
                       broken_urls: int = 0) -> Path:
    """Webdataset shards written by the real img2dataset from a loopback server.

    ``samples`` are label dicts (every key becomes a saved column); each gets a served image.
    ``broken_urls`` extra rows point at missing files (img2dataset records them as failed).
    Returns the output folder (``00000.tar``, ``00000.parquet``, ``00000_stats.json``, ...).
    """
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no update check over the network
    from img2dataset import download

    workdir = Path(workdir)
    images = workdir / "served"
    for i, _ in enumerate(samples):
        write_image(images / f"{i}.png", seed=100 + i, size=(20 + i % 5, 24))
    columns = list(dict.fromkeys(k for s in samples for k in s))
    with serve_directory(images) as base:
        urls = [f"{base}/{i}.png" for i in range(len(samples))]
        urls += [f"{base}/absent-{i}.png" for i in range(broken_urls)]
        table = {c: [s.get(c) for s in samples] + [None] * broken_urls for c in columns}
        pl.DataFrame({"url": urls, **table}).write_parquet(workdir / "urls.parquet")
        download(url_list=str(workdir / "urls.parquet"), input_format="parquet", url_col="url",
                 output_format="webdataset", output_folder=str(workdir / "shards"),
                 save_additional_columns=columns, processes_count=1, thread_count=4,
                 number_sample_per_shard=per_shard, image_size=32, resize_mode="no",
                 encode_format="jpg", enable_wandb=False, timeout=5, retries=0)
    return workdir / "shards"


def make_embeddings(root: str | os.PathLike, vectors: np.ndarray, metadata: dict[str, list],
                    parts: int = 2) -> Path:
    """clip-retrieval's layout: ``img_emb/img_emb_<i>.npy`` row-aligned with
    ``metadata/metadata_<i>.parquet``, the rows cut into ``parts`` consecutive parts."""
    root = Path(root)
    (root / "img_emb").mkdir(parents=True, exist_ok=True)
    (root / "metadata").mkdir(parents=True, exist_ok=True)
    frame = pl.DataFrame(metadata)
    for i, rows in enumerate(np.array_split(np.arange(len(vectors)), parts)):
        np.save(root / "img_emb" / f"img_emb_{i}.npy", vectors[rows])
        part = frame.slice(int(rows[0]) if len(rows) else 0, len(rows))
        part.write_parquet(root / "metadata" / f"metadata_{i}.parquet")
    return root
