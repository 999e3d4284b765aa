"""``vlaudit report``: result directories -> one self-contained HTML file."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> None:
    from engine.cli import add_common

    parser = subparsers.add_parser(
        "report", help="write a self-contained HTML report of result directories",
        description="Build one HTML file (inline CSS and SVG, no network at view time) from any "
                    "mix of index, audit, scan, provenance and other result directories, or "
                    "directories that contain them.")
    parser.add_argument("dirs", nargs="+", metavar="DIR", help="result directories")
    parser.add_argument("--out", required=True, metavar="FILE", help="the HTML file to write")
    parser.add_argument("--title", default="vlaudit report")
    add_common(parser)
    parser.set_defaults(run=run, render=render)


def run(args: argparse.Namespace) -> dict:
    from engine.report import run_report

    return run_report(args.dirs, args.out, title=args.title)


def render(result: dict) -> str:
    kinds = ", ".join(f"{run['kind']} {run['path']}" for run in result["runs"])
    return f"report: {result['out']} ({result['bytes'] / 1024:.0f} KiB) covering {kinds}"
