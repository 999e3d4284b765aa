"""``vlaudit rankfair NAME``: ranking fairness of occupation prompts (AUC between groups)."""

from __future__ import annotations

from pathlib import Path

from engine.commands import analysis_options as options


def add_parser(subparsers) -> None:
    from engine.cli import add_common
    from engine.faces.ranking_job import DEFAULT_OCCUPATIONS, DEFAULT_TEMPLATE

    parser = subparsers.add_parser(
        "rankfair", help="ranking AUC and misrank rate between groups for occupation prompts",
        description="Score every face of index NAME against occupation prompts with the index's "
                    "model; per prompt, attribute and pair of groups: AUC (ties 1/2), misrank rate "
                    "1 - AUC and a bootstrap interval.")
    options.add_index_options(parser)
    parser.add_argument("--occupation", action="append", default=[], metavar="WORD",
                        help=f"occupation (repeatable; default {', '.join(DEFAULT_OCCUPATIONS)})")
    parser.add_argument("--occupations-file", type=Path, help="word list file, one occupation per line")
    parser.add_argument("--template", default=DEFAULT_TEMPLATE, help="prompt template (default %(default)r)")
    parser.add_argument("--attribute", action="append", default=[], metavar="ATTR",
                        help="attribute to compare groups of (repeatable; default: every labelled one)")
    parser.add_argument("--comparisons", choices=("pairs", "rest", "both"), default="both",
                        help="pairs of groups, each group against the rest, or both (default)")
    parser.add_argument("--bootstrap", type=int, default=1000, help="resamples for the interval (0: none)")
    parser.add_argument("--level", type=float, default=0.95, help="interval level (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    options.add_device_option(parser)
    options.add_out_option(parser, "rankfair")
    add_common(parser)
    parser.set_defaults(run=run, render=render)


def run(args) -> dict:
    from engine.faces.embedding_inputs import read_word_list
    from engine.faces.ranking import BootstrapConfig
    from engine.faces.ranking_job import DEFAULT_OCCUPATIONS, RankfairConfig, run_rankfair

    occupations = list(args.occupation)
    if args.occupations_file is not None:
        occupations += read_word_list(args.occupations_file)
    config = RankfairConfig(
        index=args.name, out_dir=options.out_dir(args, "rankfair", Path(args.name).name),
        indexes_dir=args.indexes_dir, occupations=tuple(occupations) or DEFAULT_OCCUPATIONS,
        template=args.template, attributes=tuple(args.attribute), comparisons=args.comparisons,
        bootstrap=BootstrapConfig(resamples=args.bootstrap, level=args.level, seed=args.seed),
        device=args.device)
    return run_rankfair(config)


def render(result: dict) -> str:
    columns = ["prompt", "attribute", "group_a", "group_b", "auc", "misrank", "ci_low", "ci_high"]
    return "\n".join(["largest AUC gap per prompt and attribute:",
                      options.format_table(result["strongest"], columns, "{:.3f}"),
                      f"tables written to {result['out']}"])
