"""``vlaudit hypodescent MORPHS``: how a model labels faces morphed between two groups."""

from __future__ import annotations

from pathlib import Path

from engine.commands import analysis_options as options


def add_parser(subparsers) -> None:
    from engine.cli import add_common
    from engine.faces.hypodescent import DEFAULT_LABELS, DEFAULT_TEMPLATE

    parser = subparsers.add_parser(
        "hypodescent", help="hypodescent and valence in morph series (Wolfe, Banaji & Caliskan 2022)",
        description="MORPHS is a table (CSV/parquet: series_id, step, [mixing_ratio], source_group, "
                    "target_group, image) or a folder <source>_to_<target>/<series>/<step>.jpg.")
    parser.add_argument("morphs", type=Path, help="morph table or folder")
    parser.add_argument("--template", default=DEFAULT_TEMPLATE,
                        help="prompt for a label; {word} is the label, {article} its a/an (default: %(default)r)")
    parser.add_argument("--label", action="append", default=[], metavar="LABEL",
                        help=f"a further label to compare with, beside {', '.join(DEFAULT_LABELS)} (repeatable)")
    parser.add_argument("--only-labels", action="store_true", help="use only the --label values")
    parser.add_argument("--race-label", action="append", default=[], metavar="GROUP",
                        help="a further race prompt for the argmax, beside the data's groups (repeatable)")
    parser.add_argument("--shard-size", type=int, default=1024,
                        help="images per resumable embedding shard (default %(default)s)")
    options.add_model_options(parser)
    options.add_out_option(parser, "hypodescent")
    add_common(parser)
    parser.set_defaults(run=run, render=render)


def run(args) -> dict:
    from engine.errors import InputError
    from engine.faces.hypodescent import DEFAULT_LABELS
    from engine.faces.hypodescent_job import HypodescentConfig, run_hypodescent

    spec = options.model_spec(args)
    if spec is None:
        raise InputError("hypodescent embeds the morph images: choose a model with --model and "
                         "--pretrained TAG (or --checkpoint FILE)")
    labels = tuple(args.label) if args.only_labels else tuple(dict.fromkeys(DEFAULT_LABELS + tuple(args.label)))
    config = HypodescentConfig(morphs=args.morphs, model=spec,
                               out_dir=options.out_dir(args, "hypodescent", args.morphs.stem),
                               template=args.template, labels=labels,
                               race_labels=tuple(args.race_label), device=args.device,
                               shard_size=args.shard_size, progress=not args.json)
    return run_hypodescent(config)


def render(result: dict) -> str:
    columns = ["source_group", "target_group", "n_series", "midpoint_ratio", "midpoint_share_minority",
               "crossover_ratio", "r_target_person", "r_valence_minority"]
    rows = [{c: ("-" if r[c] is None else r[c]) for c in columns} for r in result["pairs"]]
    lines = [options.format_table(rows, columns, floats="{:.3f}")]
    if result["failures"]:
        lines.append(f"{result['failures']} unreadable images skipped (failures.parquet)")
    lines.append(f"tables and charts written to {result['out']}")
    return "\n".join(lines)
