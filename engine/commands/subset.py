"""``vlaudit subset``: the URLs and captions behind a word (x group), as img2dataset input."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> None:
    from engine.cli import add_common

    parser = subparsers.add_parser(
        "subset", help="URLs and captions of the captions with a word (and a group)",
        description="Write the captions of a scan database that contain WORD (and a term of GROUP) "
                    "with their URLs, in the parquet layout img2dataset reads; --download runs "
                    "img2dataset on it (webdataset output) so the images can be audited.")
    parser.add_argument("--db", required=True, metavar="FILE.duckdb", help="database of `vlaudit scan`")
    parser.add_argument("--word", required=True, help="a taxonomy word (any case; plurals work)")
    parser.add_argument("--group", metavar="GROUP", help="a lexicon group: female, or gender/female")
    parser.add_argument("--with-ambiguous", action="store_true",
                        help="let ambiguous single words (\"black\", \"old\") count for the group")
    parser.add_argument("--out", required=True, metavar="urls.parquet", help="parquet to write")
    parser.add_argument("--download", metavar="DIR", help="run img2dataset into DIR (webdataset)")
    parser.add_argument("--image-size", type=int, default=256, help="img2dataset image size (default 256)")
    parser.add_argument("--processes", type=int, default=1, help="img2dataset processes (default 1)")
    parser.add_argument("--threads", type=int, default=16, help="img2dataset threads (default 16)")
    add_common(parser)
    parser.set_defaults(run=run, render=render)


def run(args: argparse.Namespace) -> dict:
    from engine.captions.subset import SubsetConfig, run_subset

    config = SubsetConfig(db=args.db, word=args.word, out=args.out, group=args.group,
                          variant="with_ambiguous" if args.with_ambiguous else "unambiguous",
                          download=args.download, image_size=args.image_size,
                          processes=args.processes, threads=args.threads)
    return run_subset(config)


def render(result: dict) -> str:
    target = result["word"] + (f" x {result['group']}" if result["group"] else "")
    lines = [f"subset {target}: {result['urls']} URLs from {result['captions']} captions -> {result['out']}"]
    if result["without_url"] or result["duplicate_urls"]:
        lines.append(f"  {result['without_url']} captions have no URL in their source (text files), "
                     f"{result['duplicate_urls']} repeat a URL")
    if "download" in result:
        d = result["download"]
        lines.append(f"  downloaded {d['successes']} of {d['count']} images into {d['output_folder']} "
                     f"({d['failed']} failed)")
    return "\n".join(lines)
