"""``vlaudit scan``: count taxonomy words and demographic terms in LAION-style captions."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> None:
    from engine.batch import add_engine_arguments
    from engine.cli import add_common

    parser = subparsers.add_parser(
        "scan", help="count word x group co-occurrence in pretraining captions",
        description="Read caption sources (webdataset tars, img2dataset parquet, LAION metadata "
                    "parquet, text files; paths, directories or globs) into a DuckDB database and "
                    "write co-occurrence counts and statistics. Rerun to resume or to add files.")
    parser.add_argument("sources", nargs="+", metavar="SOURCE", help="file, directory or glob")
    parser.add_argument("--db", required=True, metavar="FILE.duckdb",
                        help="database to create or add to (one taxonomy/lexicon per database)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory (replaced whole)")
    parser.add_argument("--taxonomy", default="sobit", metavar="sobit|FILE",
                        help="taxonomy words: sobit[:version], or a CSV category,word[,pos]")
    parser.add_argument("--lexicon", default="default", metavar="default|FILE",
                        help="demographic lexicon: default, or a CSV axis,group,term[,pos,ambiguous,context]")
    parser.add_argument("--exact-forms", action="store_true",
                        help="match only the forms written in the files (no plurals)")
    parser.add_argument("--workers", type=int, default=0,
                        help="local processes, each scanning one file at a time (default: one per "
                             "CPU, at most one per map task of files)")
    parser.add_argument("--threads", type=int, default=0,
                        help="matching threads per file (default: the CPUs left to each worker)")
    parser.add_argument("--examples", type=int, default=3, metavar="N",
                        help="evidence captions per word x group (default 3)")
    parser.add_argument("--memory-limit", default="512MB", metavar="SIZE",
                        help="DuckDB memory limit; bigger reduces spill to disk (default 512MB)")
    parser.add_argument("--prior-scale", type=float, default=1000.0, metavar="A0",
                        help="total pseudo-count of the log-odds prior (default 1000)")
    add_engine_arguments(parser)
    add_common(parser)
    parser.set_defaults(run=run, render=render)


def run(args: argparse.Namespace) -> dict:
    from engine.batch import executor_options
    from engine.captions.scan import ScanConfig, run_scan
    from engine.captions.summary import summarise

    config = ScanConfig(sources=tuple(args.sources), db=args.db, out=args.out,
                        taxonomy=args.taxonomy, lexicon=args.lexicon, exact_forms=args.exact_forms,
                        workers=args.workers, threads=args.threads, executor=executor_options(args),
                        examples_per_pair=args.examples, prior_scale=args.prior_scale,
                        memory_limit=args.memory_limit,
                        progress=not args.json)
    return summarise(run_scan(config), args.out)


def render(result: dict) -> str:
    from engine.captions.summary import render_summary

    return render_summary(result)
