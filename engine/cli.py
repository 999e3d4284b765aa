"""The ``vlaudit`` command: parse arguments, call the API, print the result. Nothing else.

Each subcommand lives in ``engine/commands/<name>.py`` and provides
``add_parser(subparsers)``, which registers its parser and sets ``run=`` (args -> result dict) and
optionally ``render=`` (result dict -> text for the terminal). With ``--json`` the result dict is
printed as one JSON object on stdout; otherwise ``render`` (or a compact JSON) is printed.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys

from engine import __version__
from engine.errors import VlauditError

COMMAND_MODULES = (
    "index",
    "query",
    "audit",
    "provenance",
    "eat",
    "hypodescent",
    "classify",
    "rankfair",
    "report",
    "scan",
    "subset",
    "demo",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vlaudit", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"vlaudit {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"engine.commands.{name}").add_parser(subparsers)
    return parser


def add_common(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options every subcommand takes."""
    parser.add_argument("--json", action="store_true", help="print one JSON object with the result")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        result = args.run(args)
    except VlauditError as exc:
        print(f"vlaudit {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"vlaudit {args.command}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(result, default=str, sort_keys=True))
    else:
        render = getattr(args, "render", None)
        print(render(result) if render else json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
