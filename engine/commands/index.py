"""``vlaudit index build|info|list``: embed a face source into a FAISS index, and describe indexes."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

DEFAULT_INDEXES_DIR = "indexes"


def add_parser(subparsers) -> None:
    from engine.batch import add_engine_arguments
    from engine.cli import add_common
    from engine.commands.analysis_options import add_device_option

    parser = subparsers.add_parser("index", help="build, inspect and list face indexes")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    build = add_common(actions.add_parser("build", help="embed a face source into indexes/NAME"))
    build.add_argument("name", help="index name (a directory under --indexes-dir)")
    add_source_arguments(build)
    add_model_arguments(build, required=True)
    build.add_argument("--factory", default="auto",
                       help="FAISS index: Flat (exact inner product), auto (exact up to 1M items, "
                            "else HNSW32,Flat), or any factory string such as IVF1024,Flat; with "
                            "--on-disk an IVF factory (auto: IVF{nlist},Flat)")
    build.add_argument("--on-disk", action="store_true",
                       help="an IVF index whose inverted lists stay on disk (index.ivfdata), built "
                            "from the embedded shards without holding all vectors in memory")
    build.add_argument("--nlist", type=int, default=None,
                       help="--on-disk: inverted lists (default: a power of two near 4*sqrt(count))")
    build.add_argument("--nprobe", type=int, default=None,
                       help="--on-disk: lists searched per query (default nlist/8, at least 8; "
                            "nprobe = nlist is exact search)")
    build.add_argument("--batch-size", type=int, default=64, help="images per forward pass")
    build.add_argument("--workers", type=int, default=None,
                       help="image-decoding processes (default: one per spare core; 0 = none)")
    build.add_argument("--shard-size", type=int, default=4096,
                       help="items per resumable shard (default 4096)")
    add_device_option(build)
    build.add_argument("--max-pixels", type=int, default=None,
                       help="refuse images with more pixels (decompression-bomb guard)")
    build.add_argument("--overwrite", action="store_true", help="replace an existing index NAME")
    build.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_indexes_dir(build)
    add_engine_arguments(build)
    build.set_defaults(run=run_build, render=render_build)

    info = add_common(actions.add_parser("info", help="show an index's manifest"))
    info.add_argument("name", help="index name, or a path to an index directory")
    add_indexes_dir(info)
    info.set_defaults(run=run_info, render=render_info)

    listing = add_common(actions.add_parser("list", help="list the indexes under --indexes-dir"))
    add_indexes_dir(listing)
    listing.set_defaults(run=run_list, render=render_list)


def add_indexes_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--indexes-dir", default=DEFAULT_INDEXES_DIR, type=Path,
                        help="where indexes live (default: ./indexes)")


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", required=True,
                        help="KIND:PATH with KIND fairface, cfd, folder, wds or embeddings")
    parser.add_argument("--split", default="val", help="fairface: train or val (default val)")
    parser.add_argument("--service-test", action="store_true", help="fairface: the service_test subset")
    parser.add_argument("--expressions", default="N",
                        help="cfd: comma-separated expression codes to keep (N,A,F,HC,HO or all; "
                             "default N)")
    parser.add_argument("--norming", default=None, help="cfd: norming workbook to join on Model")
    parser.add_argument("--norming-raters", default="us", help="cfd: CFD-INDIA norming sheet, us or india")
    parser.add_argument("--labels", default=None, help="folder: label CSV (default DIR/labels.csv)")
    parser.add_argument("--attributes", default=None,
                        help="folder/wds/embeddings: comma-separated label columns to audit (default all)")
    parser.add_argument("--label-map", default=None,
                        help="CSV attribute,raw,group mapping extra raw labels to canonical groups")


def add_model_arguments(parser: argparse.ArgumentParser, *, required: bool) -> None:
    parser.add_argument("--model", required=required, help="open_clip model name, e.g. ViT-B-32")
    weights = parser.add_mutually_exclusive_group(required=required)
    weights.add_argument("--pretrained", help="open_clip pretrained tag (cached or downloaded), "
                                              "or 'none' for random weights (tests only)")
    weights.add_argument("--checkpoint", help="local weights file for --model")


def run_build(args) -> dict:
    from engine.batch import executor_options
    from engine.faces.build import BuildConfig, run_build as build
    from engine.faces.models import ModelSpec
    from engine.faces.sources import SourceOptions

    options = SourceOptions(split=args.split, service_test=args.service_test, expressions=args.expressions,
                            norming=args.norming, norming_raters=args.norming_raters,
                            labels=args.labels, attributes=args.attributes, label_map=args.label_map)
    extra = {"max_pixels": args.max_pixels} if args.max_pixels is not None else {}
    config = BuildConfig(
        name=args.name, source=args.source, source_options=options,
        model=ModelSpec(args.model, pretrained=args.pretrained, checkpoint=args.checkpoint),
        factory=args.factory, on_disk=args.on_disk, nlist=args.nlist, nprobe=args.nprobe,
        indexes_dir=args.indexes_dir, batch_size=args.batch_size,
        workers=args.workers, shard_size=args.shard_size, device=args.device,
        overwrite=args.overwrite, progress=not args.no_progress,
        executor=executor_options(args), **extra)
    return build(config)


def render_build(result: dict) -> str:
    weights = "RANDOM WEIGHTS" if result["random_weights"] else (
        result["pretrained"] or f"checkpoint {result['checkpoint']}")
    lines = [f"index {result['name']}: {result['count']} faces, dim {result['dim']}, "
             f"{result['failures']} failures -> {result['path']}",
             f"model {result['model']} ({weights}), FAISS {result['factory']}"
             + (f", lists on disk, nprobe {result['nprobe']}" if result.get("on_disk") else "")]
    if result.get("recall_vs_exact"):
        recall = result["recall_vs_exact"]
        lines.append(f"recall@{recall['k']} vs exact search: {recall['recall']:.4f}")
    if result.get("resumed_shards"):
        lines.append(f"resumed: {result['resumed_shards']} of {result['shards']} shards were already done")
    return "\n".join(lines)


def run_info(args) -> dict:
    from engine.faces.index import open_index

    opened = open_index(args.name, args.indexes_dir)  # verifies the checksums
    return {**opened.manifest, "path": str(opened.path), "verified": True}


def render_info(result: dict) -> str:
    model = result["model"]
    weights = ("RANDOM WEIGHTS (tests only)" if model.get("random_weights") else
               f"pretrained {model['pretrained']}" if model.get("pretrained") else
               f"checkpoint {model['checkpoint']} (sha256 {model['checkpoint_sha256'][:12]}...)")
    dataset = result.get("dataset", {})
    rows = [("path", result["path"]), ("model", f"{model['name']}, {weights}"),
            ("dim / metric", f"{result['dim']} / {result['metric']}"),
            ("faces", result["count"]), ("failures", result["failures"]),
            ("attributes", ", ".join(result.get("attributes", [])) or "-"),
            ("source", dataset.get("spec")), ("index", json.dumps(result["index"])),
            ("created", result["created"]), ("checksums", "verified")]
    return "\n".join(f"{label:<13} {value}" for label, value in rows)


def run_list(args) -> dict:
    from engine.faces.index import list_indexes

    return {"indexes_dir": str(args.indexes_dir), "indexes": list_indexes(args.indexes_dir)}


def render_list(result: dict) -> str:
    if not result["indexes"]:
        return f"no indexes in {result['indexes_dir']}"
    lines = [f"{'name':<24} {'count':>8} {'dim':>5}  model"]
    for entry in result["indexes"]:
        weights = "random weights" if entry["random_weights"] else (
            entry["pretrained"] or "checkpoint")
        lines.append(f"{entry['name']:<24} {entry['count']:>8} {entry['dim']:>5}  "
                     f"{entry['model']} ({weights})")
    return "\n".join(lines)
