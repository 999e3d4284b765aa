"""Options shared by the analysis commands (eat, hypodescent, classify, rankfair)."""

from __future__ import annotations

import argparse
from pathlib import Path

from engine.faces.permutation import ALTERNATIVES, DEFAULT_EXACT_MAX, DEFAULT_PERMUTATIONS

DEFAULT_OUT_ROOT = Path("vlaudit-out")


def add_index_options(parser: argparse.ArgumentParser) -> None:
    """The index a command reads its faces and model from (classify, rankfair)."""
    from engine.commands.index import add_indexes_dir

    parser.add_argument("name", help="index name (or a path to an index directory)")
    add_indexes_dir(parser)


def add_device_option(parser) -> None:
    """``--device`` on a parser or an argument group."""
    parser.add_argument("--device", default="auto", help="auto (CUDA when present, else CPU), cpu, cuda, cuda:N")


def add_model_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model (open_clip)")
    group.add_argument("--model", help="open_clip model name, e.g. ViT-B-32")
    weights = group.add_mutually_exclusive_group()
    weights.add_argument("--pretrained", help="open_clip pretrained tag ('none': random weights, tests only)")
    weights.add_argument("--checkpoint", help="local checkpoint file")
    add_device_option(group)


def model_spec(args: argparse.Namespace):
    """The ModelSpec the options name, or None when no --model was given."""
    if not args.model:
        if args.pretrained or args.checkpoint:
            from engine.errors import InputError

            raise InputError("--pretrained/--checkpoint need --model NAME")
        return None
    from engine.faces.embed import ModelSpec

    return ModelSpec(args.model, pretrained=args.pretrained, checkpoint=args.checkpoint)


def add_permutation_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("permutation test")
    group.add_argument("--alternative", choices=ALTERNATIVES, default="greater",
                       help="one-sided (greater, as the iEAT papers report; or less) or two-sided")
    group.add_argument("--permutations", type=int, default=DEFAULT_PERMUTATIONS,
                       help="splits of a sampled test, the observed one included (default %(default)s)")
    group.add_argument("--exact-max", type=int, default=DEFAULT_EXACT_MAX,
                       help="enumerate every split when there are at most this many (default %(default)s)")
    group.add_argument("--seed", type=int, default=0, help="seed of the sampled splits")


def permutation_config(args: argparse.Namespace):
    from engine.faces.permutation import PermutationConfig

    return PermutationConfig(alternative=args.alternative, permutations=args.permutations,
                             exact_max=args.exact_max, seed=args.seed)


def add_out_option(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument("--out", type=Path,
                        help=f"output directory (default {DEFAULT_OUT_ROOT}/{command}/<name>)")


def out_dir(args: argparse.Namespace, command: str, name: str) -> Path:
    return args.out if args.out is not None else DEFAULT_OUT_ROOT / command / name


def format_table(rows: list[dict], columns: list[str], floats: str = "{:.4g}") -> str:
    """A plain-text table of ``rows`` for the terminal."""
    cells = [[floats.format(r[c]) if isinstance(r[c], float) else str(r[c]) for c in columns]
             for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)
