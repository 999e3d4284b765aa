"""``vlaudit provenance``: link an audit's retrieval skew to a scan's caption co-occurrence."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> None:
    from engine.cli import add_common

    parser = subparsers.add_parser(
        "provenance", help="link retrieval skew to caption co-occurrence",
        description="Compare, word by word, whom the model retrieves (an audit directory) with whom "
                    "its training captions mention (a scan directory).")
    parser.add_argument("--audit", required=True, metavar="DIR", help="output directory of `vlaudit audit`")
    parser.add_argument("--scan", required=True, metavar="DIR", help="output directory of `vlaudit scan`")
    parser.add_argument("--out", required=True, metavar="DIR", help="directory to write (replaced whole)")
    parser.add_argument("--groups", metavar="CSV",
                        help="face-group -> lexicon-group mapping (attribute,group,axis,lexicon_group); "
                             "default: the taxonomy's demographic axes")
    parser.add_argument("--min-captions", type=int, default=10,
                        help="caption mentions a word needs before its evidence counts (default 10)")
    parser.add_argument("--z", type=float, default=1.96, dest="z_threshold",
                        help="|log-odds z| that counts as caption support or contradiction (default 1.96)")
    parser.add_argument("--with-ambiguous", action="store_true",
                        help="use the scan's counts with ambiguous single words (\"black\", \"white\") "
                             "counted alone, not only in context")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap replicates (default 1000)")
    parser.add_argument("--seed", type=int, default=0)
    add_common(parser)
    parser.set_defaults(run=run, render=render)


def run(args: argparse.Namespace) -> dict:
    from engine.provenance import ProvenanceConfig, load_group_mapping, run_provenance

    config = ProvenanceConfig(min_caption_mentions=args.min_captions, z_threshold=args.z_threshold,
                              n_boot=args.bootstrap, seed=args.seed,
                              caption_variant="with_ambiguous" if args.with_ambiguous else "unambiguous")
    result = run_provenance(args.audit, args.scan, args.out, config,
                            mapping=load_group_mapping(args.groups))
    return {"out": args.out, **result.summary}


def render(result: dict) -> str:
    lines = [f"provenance: {result['words']} words linked over {', '.join(result['attributes'])} "
             f"-> {result['out']}"]
    counts = result["divergent"]
    lines.append(f"model skew exceeds its captions for {counts['exceeds']} word x attribute pairs, "
                 f"contradicts them for {counts['contradicts']}")
    for row in result["overall_correlations"]:
        if row["group"] == "(all groups)":
            lines.append(f"  {row['attribute']:<10} Spearman {_fmt(row['spearman'])} "
                         f"[{_fmt(row['spearman_low'])}, {_fmt(row['spearman_high'])}]  "
                         f"Kendall {_fmt(row['kendall'])} [{_fmt(row['kendall_low'])}, "
                         f"{_fmt(row['kendall_high'])}]  ({row['n_words']} words)")
    for row in result["top_divergent"]:
        lines.append(f"  {row['divergence']:<11} {row['word']} ({row['attribute']}: {row['group']}, "
                     f"amplification {row['amplification']:+.2f})")
    return "\n".join(lines)


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:+.2f}"
