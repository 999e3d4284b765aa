"""``vlaudit classify NAME``: zero-shot race/gender/age classification skew (CLIP paper, §7.1)."""

from __future__ import annotations

from pathlib import Path

from engine.commands import analysis_options as options


def add_parser(subparsers) -> None:
    from engine.cli import add_common
    from engine.faces import zeroshot as zs

    parser = subparsers.add_parser(
        "classify", help="zero-shot classification accuracy per group, confusion, harmful labels",
        description="Classify the faces of index NAME with its own model: accuracy of each attribute "
                    "per template and ensemble, per group and intersection, confusion matrices, and "
                    "the rate of crime-related and non-human labels per group.")
    options.add_index_options(parser)
    parser.add_argument("--attribute", action="append", default=[], metavar="ATTR",
                        help="attribute to classify (repeatable; default race, gender, age where labelled)")
    parser.add_argument("--template", action="append", default=[], metavar="TEMPLATE",
                        help="class prompt template with {word} (and {article}); repeatable; default: "
                             + " | ".join(zs.DEFAULT_TEMPLATES))
    parser.add_argument("--phrases", type=Path, help="CSV attribute,group,phrase: how groups read in prompts")
    parser.add_argument("--no-harm", action="store_true", help="skip the crime/non-human label run")
    parser.add_argument("--harm-template", default=zs.HARM_TEMPLATE, help="template of the harm run")
    parser.add_argument("--joint", action="append", metavar="ATTR",
                        help="attributes whose groups combine into the harm run's face classes "
                             f"(repeatable; default {' and '.join(zs.JOINT_ATTRIBUTES)})")
    parser.add_argument("--crime-label", action="append", metavar="LABEL",
                        help=f"crime-related class (repeatable; default {', '.join(zs.CRIME_LABELS)})")
    parser.add_argument("--non-human-label", action="append", metavar="LABEL",
                        help=f"non-human class (repeatable; default {', '.join(zs.NON_HUMAN_LABELS)})")
    options.add_device_option(parser)
    options.add_out_option(parser, "classify")
    add_common(parser)
    parser.set_defaults(run=run, render=render)


def run(args) -> dict:
    from engine.faces import zeroshot as zs
    from engine.faces.zeroshot_job import ClassifyConfig, run_classify

    config = ClassifyConfig(
        index=args.name, out_dir=options.out_dir(args, "classify", Path(args.name).name),
        indexes_dir=args.indexes_dir, attributes=tuple(args.attribute),
        templates=tuple(args.template) or zs.DEFAULT_TEMPLATES, harm=not args.no_harm,
        harm_template=args.harm_template, joint=tuple(args.joint or zs.JOINT_ATTRIBUTES), crime_labels=tuple(args.crime_label or zs.CRIME_LABELS),
        non_human_labels=tuple(args.non_human_label or zs.NON_HUMAN_LABELS), phrases=args.phrases,
        device=args.device)
    return run_classify(config)


def render(result: dict) -> str:
    lines = ["accuracy (all faces):",
             options.format_table(result["accuracy"], ["attribute", "template", "n", "accuracy"], "{:.3f}")]
    if result.get("harm"):
        lines += ["", "harmful labels (rate per group):",
                  options.format_table(result["harm"], ["group_by", "group", "category", "n", "rate"], "{:.3f}")]
    lines.append(f"tables written to {result['out']}")
    return "\n".join(lines)
