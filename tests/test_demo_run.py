"""``vlaudit demo`` on a reduced toy world with the shipped tiny CLIP: planted truth is recovered."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine import storage
from engine.demo.model import CHECKPOINT, TRAINING_CARD
from engine.demo.spec import WORDS, WorldConfig
from tests.helpers_manifest import assert_manifest_header

REDUCED = WorldConfig(n_faces=300, n_pairs=600, shard_size=200)
K = 20


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from engine.demo.run import DemoConfig, run_demo

    out = tmp_path_factory.mktemp("demo") / "out"
    messages = []
    result = run_demo(DemoConfig(out_dir=out, world=REDUCED, k=K, progress=False), say=messages.append)
    return result, messages


def test_the_shipped_checkpoint_is_the_one_its_training_card_describes():
    card = json.loads(TRAINING_CARD.read_text())
    assert card["sha256"] == storage.sha256_file(CHECKPOINT)
    assert card["epoch_losses"][-1] < card["initial_loss"]
    assert CHECKPOINT.stat().st_size < 5_000_000


def test_every_planted_word_points_to_its_planted_group(demo):
    result, _ = demo
    planted = [row for row in result["checks"]["words"] if row["kind"] == "planted"]
    assert sorted(row["word"] for row in planted) == sorted(w.word for w in WORDS if not w.is_control)
    for row in planted:
        assert row["measured_top_group"] == row["planted_group"], row
        assert row["q_value"] < 0.05 and row["max_skew_base"] > 0 and row["passed"], row


def test_control_words_show_no_significant_skew(demo):
    result, _ = demo
    controls = [row for row in result["checks"]["words"] if row["kind"] == "control"]
    assert {row["word"] for row in controls} == {w.word for w in WORDS if w.is_control}
    assert all(row["q_value"] >= 0.05 and row["passed"] for row in controls), controls


def test_scanned_cooccurrence_equals_the_planted_counts_exactly(demo):
    result, _ = demo
    pairs = result["checks"]["pairs"]
    assert len(pairs) == len(WORDS) * 5
    assert all(row["scanned_count"] == row["planted_count"] and row["passed"] for row in pairs)
    assert any(row["planted_count"] > 0 for row in pairs if row["planted"])


def test_outputs_are_written_and_the_report_shows_the_checks(demo):
    result, messages = demo
    assert result["passed"]
    for name in ("index", "audit", "scan", "provenance", "checks", "report"):
        assert Path(result["outputs"][name]).exists(), name
    html = Path(result["report"]).read_text()
    demo_at, overview_at = html.index('id="demo-checks"'), html.index('id="overview"')
    assert overview_at < demo_at < html.index('id="index-')  # the demo's answer comes first
    assert "Demo: planted truth vs measured" in html and "All checks passed." in html
    summary = result["checks"]["summary"]
    planted = summary["planted_words"]
    assert f"{planted['passed']} of {planted['checks']} planted words" in html
    pairs = summary["cooccurrence_pairs"]
    assert f"{pairs['passed']} of {pairs['checks']} pairs equal" in html
    assert "retrieval_checks.svg" in html and "Results: demo" not in html  # not shown generically
    assert messages[-1] == f"report: {result['report']}"


@pytest.mark.parametrize("output, stage", [("index", "index"), ("audit", "audit"), ("scan", "scan"),
                                           ("provenance", "provenance"), ("checks", "demo")])
def test_every_output_manifest_starts_with_the_common_keys(demo, output, stage):
    result, _ = demo
    assert_manifest_header(storage.read_json(Path(result["outputs"][output]) / "manifest.json"), stage)


def test_the_cli_renders_the_checks_and_ends_with_the_report_path(demo):
    from engine.cli import build_parser
    from engine.commands.demo import render

    result, _ = demo
    args = build_parser().parse_args(["demo", "--out", "somewhere", "--json"])
    assert args.json and str(args.out) == "somewhere"
    text = render(result)
    assert "cheerful" in text and "FAIL" not in text
    assert text.splitlines()[-1] == f"report: {result['report']}"
    json.dumps(result, default=str)  # --json prints it


def test_bad_demo_settings_are_refused_before_any_work(tmp_path):
    from engine.demo.run import DemoConfig, run_demo
    from engine.errors import InputError

    with pytest.raises(InputError, match="k must lie in 1..300"):
        DemoConfig(out_dir=tmp_path, world=REDUCED, k=301)
    with pytest.raises(InputError, match="checkpoint .* is missing"):
        run_demo(DemoConfig(out_dir=tmp_path, world=REDUCED, checkpoint=tmp_path / "none.pt"))
    assert not any(tmp_path.iterdir())
