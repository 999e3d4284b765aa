"""The report in a real browser: headless Chromium opens it from a file:// URL with networking
off and checks that it renders without console errors, shows its charts and tables, and shows a
caption containing <script> as text without running it. Keeps a screenshot in test-artifacts/."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import pytest

from engine.report import run_report
from helpers_browser import Chromium, find_chromium
from helpers_report import HOSTILE_CAPTION, make_runs

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
CHROMIUM = find_chromium()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium binary (Debian: apt-get install chromium; tests/run.sh "
                             "installs it; or set CHROMIUM=/path/to/chrome)")


def open_page(browser: Chromium, url: str) -> str:
    """Open ``url`` in a new tab with the network emulated offline; return the session id."""
    target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    for method in ("Runtime.enable", "Log.enable", "Network.enable", "Page.enable"):
        browser.send(method, session=session)
    browser.send("Emulation.setDeviceMetricsOverride", {"width": 1280, "height": 900,
                 "deviceScaleFactor": 1, "mobile": False}, session)
    browser.send("Network.emulateNetworkConditions", {"offline": True, "latency": 0,
                 "downloadThroughput": -1, "uploadThroughput": -1}, session)
    since = len(browser.events)
    browser.send("Page.navigate", {"url": url}, session)
    browser.wait_event("Page.loadEventFired", session, since)
    check = f"document.readyState === 'complete' && location.href === {json.dumps(url)}"
    deadline = time.monotonic() + 20
    while not evaluate(browser, session, check):  # a late event of the blank page must not fool us
        assert time.monotonic() < deadline, f"{url} did not finish loading"
        time.sleep(0.05)
    return session


def evaluate(browser: Chromium, session: str, expression: str):
    reply = browser.send("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session)
    if "exceptionDetails" in reply:
        raise AssertionError(f"page script failed: {reply['exceptionDetails']}")
    return reply["result"].get("value")


def console_errors(events: list[dict]) -> list[dict]:
    def is_error(event):
        params = event.get("params", {})
        return (event["method"] == "Runtime.exceptionThrown"
                or (event["method"] == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"))
                or (event["method"] == "Log.entryAdded" and params["entry"]["level"] == "error"))
    return [event for event in events if is_error(event)]


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    chromium = Chromium(CHROMIUM, tmp_path_factory.mktemp("chromium-profile"))
    yield chromium
    chromium.close()


@pytest.fixture(scope="module")
def report_page(browser, tmp_path_factory):
    root = tmp_path_factory.mktemp("browser-report")
    make_runs(root / "runs")
    report = root / "report.html"
    run_report([root / "runs"], report)
    session = open_page(browser, report.as_uri())
    return browser, session, report


def test_harness_sees_console_errors(browser, tmp_path):
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><title>t</title><script>console.error('boom'); undefinedCall();</script>")
    session = open_page(browser, page.as_uri())
    errors = [e for e in console_errors(browser.events) if e.get("sessionId") == session]
    assert len(errors) >= 2, "the harness must notice console errors and exceptions"


def test_renders_offline_without_console_errors(report_page):
    browser, session, report = report_page
    events = [e for e in browser.events if e.get("sessionId") == session]
    assert console_errors(events) == []
    requested = [e["params"]["request"]["url"] for e in events if e["method"] == "Network.requestWillBeSent"]
    assert requested and all(url.startswith(("file:", "data:")) for url in requested), requested
    assert evaluate(browser, session, "document.readyState") == "complete"


def test_charts_and_tables_present(report_page):
    browser, session, _report = report_page
    found = json.loads(evaluate(browser, session, """JSON.stringify({
        bars: document.querySelectorAll('svg.chart.bars rect').length,
        heatmaps: document.querySelectorAll('svg.chart.heatmap').length,
        scatters: document.querySelectorAll('svg.chart.scatter').length,
        dots: document.querySelectorAll('svg.chart.scatter circle').length,
        tables: document.querySelectorAll('table.data').length,
        visibleCharts: [...document.querySelectorAll('svg.chart')].filter(
            s => s.getBoundingClientRect().width > 100).length,
        sections: [...document.querySelectorAll('section')].map(s => s.id),
        title: document.title})"""))
    assert found["heatmaps"] == 2 and found["scatters"] >= 4 and found["dots"] >= 40
    assert found["bars"] > 20 and found["tables"] >= 6 and found["visibleCharts"] >= 6
    assert {"overview", "methods", "manifests"} <= set(found["sections"])
    assert found["title"] == "vlaudit report"


def test_script_in_caption_shows_as_text_and_does_not_run(report_page):
    browser, session, _report = report_page
    assert evaluate(browser, session, "typeof window.__pwned") == "undefined"
    assert evaluate(browser, session, "document.scripts.length") == 0
    images = evaluate(browser, session, "[...document.images].map(i => [i.getAttribute('src').slice(0, 26), "
                                        "i.naturalWidth, i.hasAttribute('onerror')])")
    assert images == [["data:image/svg+xml;base64,", 200, False]]  # only the stage's own chart
    captions = evaluate(browser, session, "[...document.querySelectorAll('q.caption')].map(q => q.textContent)")
    assert HOSTILE_CAPTION in captions


def test_screenshot_artifact(report_page):
    browser, session, _report = report_page
    size = browser.send("Page.getLayoutMetrics", session=session)["cssContentSize"]
    clip = {"x": 0, "y": 0, "width": min(size["width"], 1400), "height": min(size["height"], 12000), "scale": 1}
    shot = browser.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True,
                                                   "clip": clip}, session)
    data = base64.b64decode(shot["data"])
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "report.png").write_bytes(data)
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
