"""The HTML report: sections for whichever results are given, every data text escaped, one file
with no script and no external reference, the CLI, and bad input."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import polars as pl
import pytest

from engine import cli, storage
from engine.errors import InputError
from engine.report import build_report, run_report
from engine.report.charts import Point, scatter
from engine.report.sections_retrieval import word_metrics
from helpers_report import HOSTILE_CAPTION, HOSTILE_IMG, HOSTILE_WORD, make_runs


class Outline(HTMLParser):
    """Tags, section ids, and every text node of a page."""

    def __init__(self):
        super().__init__()
        self.tags: list[str] = []
        self.sections: list[str] = []
        self.texts: list[str] = []
        self.attrs: list[tuple[str, str]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs.extend((k, v or "") for k, v in attrs)
        if tag == "section":
            self.sections.append(dict(attrs)["id"])

    def handle_data(self, data):
        self.texts.append(data)


def outline(text: str) -> Outline:
    parser = Outline()
    parser.feed(text)
    return parser


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return make_runs(tmp_path_factory.mktemp("report") / "runs")


def test_full_report_has_every_section(runs):
    text, inputs = build_report([runs["index"].parent])
    page = outline(text)
    assert [run.kind for run in inputs.runs] == ["index", "audit", "scan", "provenance", "results", "results"]
    expected = ["overview", "index-index", "audit-audit-top", "audit-audit-heat", "audit-audit-bars",
                "prov-provenance-scatter", "prov-provenance-evidence", "scan-scan",
                "scan-scan-examples", "results-eat", "results-hypo", "methods", "manifests"]
    assert page.sections == expected
    assert page.tags.count("svg") >= 2 + 2 + 6  # heat maps, bar charts, scatters
    joined = " ".join(page.texts)
    assert "a photo of {article} {word}" in joined and "fairface-val" in joined
    assert "audit: 5 of 12 words retrieve a gender mix" in joined
    assert re.search(r"provenance: caption skew vs retrieval skew, gender: Spearman [+-]\d", joined)
    assert "<summary>items (40 rows)</summary>" in text and "Results: eat (eat)" in joined
    for phrase in ("Perceived, not self-identified", "reconstruction", "English-only", "Kendall tau-b",
                   "ViT-B-32", "permutations", "index base rate"):
        assert phrase in joined


def test_most_skewed_words_are_the_largest_kl(runs):
    skew = pl.read_parquet(runs["audit"] / "skew.parquet")
    metrics = word_metrics(skew)
    row = metrics.filter(word="nurse", attribute="race").row(0, named=True)
    part = skew.filter(word="nurse", attribute="race").to_dicts()
    kl = sum(r["share"] * __import__("math").log(r["share"] / r["base_rate"]) for r in part if r["share"])
    top = max(part, key=lambda r: r["share"] / r["base_rate"])
    assert row["kl"] == pytest.approx(kl) and row["top_group"] == top["group"]
    assert row["ndkl_base"] == 0.1 and row["k"] == 100 and row["label"] == "nurse"


def test_text_from_data_is_escaped(runs):
    text, _ = build_report([runs["index"].parent])
    page = outline(text)
    assert page.tags.count("script") == 0 and "marquee" not in page.tags
    assert [v[:26] for k, v in page.attrs if k == "src"] == ["data:image/svg+xml;base64,"]
    joined = "".join(page.texts)
    assert HOSTILE_CAPTION in joined and HOSTILE_IMG in joined and HOSTILE_WORD in joined
    assert "&lt;script&gt;document.title" in text and "<script>" not in text
    assert not any(value.lower().startswith("javascript:") for _key, value in page.attrs)


def test_self_contained(runs):
    text, _ = build_report([runs["index"].parent])
    page = outline(text)
    references = [v for k, v in page.attrs if k in ("src", "href", "action", "data", "srcset")]
    assert all(ref.startswith(("#", "data:image/svg+xml;base64,")) for ref in references), references
    assert "http-equiv" in dict(page.attrs) or any(k == "http-equiv" for k, _ in page.attrs)
    assert not re.search(r"url\(|@import", text)


def test_partial_inputs_give_partial_report(runs):
    text, _ = build_report([runs["audit"]])
    sections = outline(text).sections
    assert "audit-audit-top" in sections and not any(s.startswith(("prov-", "scan-")) for s in sections)
    text, _ = build_report([runs["scan"]])
    sections = outline(text).sections
    assert sections[:3] == ["overview", "scan-scan", "scan-scan-examples"]


def test_scatter_escapes_and_skips_non_finite():
    svg = scatter([Point(0.5, 1.0, "<w>"), Point(float("nan"), 1.0, "gone")], "x", "y", "t")
    assert "&lt;w&gt;" in svg and "gone" not in svg and svg.count("<circle") == 1


def test_cli_writes_report(runs, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("report",))
    out = tmp_path / "r" / "report.html"
    code = cli.main(["report", str(runs["audit"]), str(runs["provenance"]), "--out", str(out), "--json"])
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and result["out"] == str(out) and out.stat().st_size == result["bytes"]
    assert [r["kind"] for r in result["runs"]] == ["audit", "provenance"]
    assert out.stat().st_mode & 0o044 == 0o044  # readable like any document
    code = cli.main(["report", str(tmp_path / "r"), "--out", str(tmp_path / "x.html")])
    assert code == 2 and "holds no results" in capsys.readouterr().err


def test_bad_inputs(runs, tmp_path):
    with pytest.raises(InputError, match="not a directory"):
        run_report([tmp_path / "missing"], tmp_path / "r.html")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "skew.parquet").write_bytes(b"not parquet")
    with pytest.raises(InputError, match="not a readable parquet"):
        run_report([broken], tmp_path / "r.html")
    storage.write_text(broken / "skew.parquet", "")
    (broken / "skew.parquet").unlink()
    (broken / "manifest.json").write_text("{broken")
    storage.write_parquet(broken / "t.parquet", pl.DataFrame({"a": [1]}))
    with pytest.raises(InputError, match="not readable JSON"):
        run_report([broken], tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()
