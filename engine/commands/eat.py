"""``vlaudit eat --suite FILE``: embedding association tests (WEAT/iEAT, SC-EAT)."""

from __future__ import annotations

from pathlib import Path

from engine.commands import analysis_options as options


def add_parser(subparsers) -> None:
    from engine.cli import add_common

    parser = subparsers.add_parser(
        "eat", help="embedding association tests (WEAT/iEAT, SC-EAT) from a suite file",
        description="Run the tests of a suite CSV (test,X,Y,A,B; paths relative to the suite: "
                    "embedding files .npy/.csv/.parquet, image folders, word lists .txt/.csv, or "
                    "face sources KIND:PATH?race=...). An empty Y runs an SC-EAT of every item of X.")
    parser.add_argument("--suite", type=Path, required=True, help="the suite CSV")
    parser.add_argument("--unequal", choices=("error", "resplit"), default="error",
                        help="unequal |X|, |Y|: refuse (default), or re-split X u Y into |X| and |Y|")
    parser.add_argument("--text-template", default="{}",
                        help="prompt for each word of a word list, {} is the word (default: bare word)")
    options.add_model_options(parser)
    options.add_permutation_options(parser)
    options.add_out_option(parser, "eat")
    add_common(parser)
    parser.set_defaults(run=run, render=render)


def run(args) -> dict:
    from engine.faces.eat_suite import EatConfig, run_suite

    config = EatConfig(suite=args.suite, out_dir=options.out_dir(args, "eat", args.suite.stem),
                       model=options.model_spec(args), permutation=options.permutation_config(args),
                       unequal=args.unequal, text_template=args.text_template, device=args.device)
    return run_suite(config)


def render(result: dict) -> str:
    columns = ["test", "d", "p", "n_x", "n_y", "n_a", "n_b", "alternative", "method", "permutations"]
    lines = [options.format_table(result["tests"], columns)] if result["tests"] else []
    if result["sc_eat_items"]:
        lines.append(f"SC-EAT: {result['sc_eat_items']} items (items.parquet)")
    if result["failures"]:
        lines.append(f"{result['failures']} unreadable images skipped (failures.parquet)")
    if result.get("out"):
        lines.append(f"written to {result['out']}")
    return "\n".join(lines)
