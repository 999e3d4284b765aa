"""``vlaudit audit NAME --taxonomy sobit|FILE --out DIR``: retrieval skew of every taxonomy word."""

from __future__ import annotations

from pathlib import Path


def add_parser(subparsers) -> None:
    from engine.cli import add_common
    from engine.commands.analysis_options import add_device_option
    from engine.commands.index import add_indexes_dir

    parser = add_common(subparsers.add_parser(
        "audit", help="measure how skewed the faces retrieved for each taxonomy word are"))
    parser.add_argument("name", help="index name (or a path to an index directory)")
    parser.add_argument("--taxonomy", default="sobit",
                        help="sobit (default), sobit:ameliagmz, sobit:broken_mirror, a CSV "
                             "(category,word[,pos]) or a directory of word files")
    parser.add_argument("-k", type=int, default=100, help="faces retrieved per word (default 100)")
    parser.add_argument("--attributes", type=_names, default=None,
                        help="comma-separated, e.g. race,gender,age,race4,age3,race*gender "
                             "(default: race, gender, age and race*gender where labelled)")
    parser.add_argument("--templates", default="sobit",
                        help="template set: sobit (default), portrait, berg, or a CSV (id,pos,template)")
    parser.add_argument("--template-mode", choices=("ensemble", "each"), default="ensemble",
                        help="average a word's templates (default) or audit each template")
    parser.add_argument("--seed", type=int, default=0, help="seed of the simulated null (default 0)")
    parser.add_argument("--null-draws", type=int, default=9999,
                        help="random k-subsets per attribute when the null is simulated (default 9999)")
    parser.add_argument("--skew-floor", type=float, default=None,
                        help="share floor inside Skew@k (default 1/k)")
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    add_device_option(parser)
    add_indexes_dir(parser)
    parser.set_defaults(run=run, render=render)


def _names(text: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in text.split(",") if n.strip())


def run(args) -> dict:
    from engine.audit import run_audit

    result = run_audit(args.name, args.taxonomy, args.out, indexes_dir=args.indexes_dir, k=args.k,
                       attributes=args.attributes, templates=args.templates,
                       template_mode=args.template_mode, seed=args.seed, null_draws=args.null_draws,
                       skew_floor=args.skew_floor, device=args.device)
    return result.summary | {"out": str(args.out)}


def render(result: dict) -> str:
    from engine.audit_summary import render as render_summary

    return render_summary(result) + f"\n\noutputs in {result['out']} (summary.json, skew.parquet, hits.parquet)"
