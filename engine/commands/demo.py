"""``vlaudit demo``: the whole engine, offline, on a synthetic world with planted bias."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers) -> None:
    from engine.cli import add_common

    parser = subparsers.add_parser(
        "demo", help="run the whole engine on a synthetic world with planted bias (offline)",
        description="Generate a toy world whose truth is known (abstract face drawings, captions "
                    "with planted word-group associations), then build its index with a tiny CLIP "
                    "trained on those captions, audit it, scan the captions, link both and write "
                    "the report, checking every measurement against the planted truth. The world "
                    "is synthetic: it shows how the engine works and proves nothing about real "
                    "models.")
    parser.add_argument("--out", type=Path, default=Path("vlaudit-out"),
                        help="output directory (default ./vlaudit-out)")
    parser.add_argument("-k", type=int, default=50, help="faces retrieved per word (default 50)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_common(parser)
    parser.set_defaults(run=run, render=render)


def run(args: argparse.Namespace) -> dict:
    from engine.demo.run import DemoConfig, run_demo

    return run_demo(DemoConfig(out_dir=args.out, k=args.k, progress=not args.no_progress))


def render(result: dict) -> str:
    checks = result["checks"]
    lines = ["Retrieval skew: planted direction vs measured (share / base rate of the top group)",
             f"  {'word':<10} {'kind':<8} {'axis':<6} {'planted':<8} {'measured':<9} "
             f"{'MaxSkew':>8} {'q':>9}  check"]
    for row in checks["words"]:
        lines.append(f"  {row['word']:<10} {row['kind']:<8} {row['attribute']:<6} "
                     f"{row['planted_group'] or '-':<8} {row['measured_top_group'] or '-':<9} "
                     f"{_number(row['max_skew_base'], '.2f'):>8} {_number(row['q_value'], '.1e'):>9}  "
                     f"{_verdict(row['passed'])}")
    pairs = checks["summary"]["cooccurrence_pairs"]
    lines.append(f"Caption co-occurrence: {pairs['passed']} of {pairs['checks']} word x group counts "
                 "equal the planted counts" + (f"; differ for {pairs['failed']}" if pairs["failed"] else ""))
    lines.append("All checks passed." if result["passed"] else "SOME CHECKS FAILED (see above).")
    seconds = sum(result["seconds"].values())
    lines.append(f"Outputs in {Path(result['outputs']['report']).parent} ({seconds:.0f} s)")
    lines.append(f"report: {result['report']}")
    return "\n".join(lines)


def _number(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _verdict(passed: bool) -> str:
    return "pass" if passed else "FAIL"
