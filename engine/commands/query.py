"""``vlaudit query NAME "text" ...``: the top-k faces for each text, in one batched search."""

from __future__ import annotations

DEFAULT_K = 10


def add_parser(subparsers) -> None:
    from engine.cli import add_common
    from engine.commands.analysis_options import add_device_option
    from engine.commands.index import add_indexes_dir, add_model_arguments

    parser = add_common(subparsers.add_parser("query", help="retrieve the top-k faces for texts"))
    parser.add_argument("name", help="index name (or a path to an index directory)")
    parser.add_argument("texts", nargs="+", help="one or more texts, e.g. \"a photo of a doctor\"")
    parser.add_argument("-k", type=int, default=DEFAULT_K, help=f"hits per text (default {DEFAULT_K})")
    add_device_option(parser)
    add_model_arguments(parser, required=False)
    add_indexes_dir(parser)
    parser.set_defaults(run=run_query, render=render_query)


def run_query(args) -> dict:
    from engine.faces.embed import Encoder
    from engine.faces.index import open_index
    from engine.faces.models import ModelSpec
    from engine.faces.query import check_same_model, query_index

    opened = open_index(args.name, args.indexes_dir)
    spec = opened.model_spec
    if args.model or args.pretrained or args.checkpoint:  # the user names a model: it must match
        weights = ({"pretrained": args.pretrained, "checkpoint": args.checkpoint}
                   if args.pretrained or args.checkpoint
                   else {"pretrained": spec.pretrained, "checkpoint": spec.checkpoint})
        spec = ModelSpec(args.model or spec.name, **weights)
        check_same_model(opened, spec)
    hits = query_index(opened, args.texts, args.k, Encoder.load(spec, args.device))
    labels = [c for c in hits.columns if c not in ("query", "text", "rank", "item_id", "score")]
    queries = []
    for position, text in enumerate(args.texts):
        rows = hits.filter(hits["query"] == position).select("rank", "item_id", "score", *labels)
        queries.append({"text": text, "hits": rows.to_dicts()})
    return {"index": opened.name, "path": str(opened.path), "k": args.k,
            "model": opened.manifest["model"]["name"],
            "pretrained": opened.manifest["model"].get("pretrained"), "queries": queries}


def render_query(result: dict) -> str:
    lines = []
    for entry in result["queries"]:
        lines.append(f"{entry['text']!r}: top {result['k']} in {result['index']}")
        for hit in entry["hits"]:
            labels = ", ".join(f"{k}={v}" for k, v in hit.items()
                               if k not in ("rank", "item_id", "score", "image", "source")
                               and not k.endswith("_raw") and v is not None)
            lines.append(f"  {hit['rank']:>4}  {hit['score']:+.4f}  {labels}")
    return "\n".join(lines)
