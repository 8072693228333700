"""The translation page in a real headless browser (Debian's chromium driven by Playwright):
type a sentence, translate, see the translation and its attention map; a screenshot is kept.

Skipped when /usr/bin/chromium is missing, unless SEQ2SEQ_REQUIRE_BROWSER=1 (set by
scripts/check.sh when it could install chromium), which makes a missing browser a failure.
Playwright never downloads a browser here: it launches the system one.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from seq2seq.bundle import load_run
from seq2seq.inference import translate_batch
from seq2seq.registry import build
from seq2seq.serve.app import create_app
from tests.conftest import live_server

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _require_browser() -> None:
    """Skip (or fail, when the browser is required) without chromium or Playwright."""
    required = os.environ.get("SEQ2SEQ_REQUIRE_BROWSER") == "1"
    problem = None
    if not CHROMIUM.exists():
        problem = f"{CHROMIUM} is missing (apt-get install chromium)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            problem = "the playwright package is missing (pip install -e '.[dev]')"
    if problem and required:
        pytest.fail(f"SEQ2SEQ_REQUIRE_BROWSER=1 but {problem}")
    if problem:
        pytest.skip(problem)


def test_page_translates_and_draws_attention(reversal_run: Path, tmp_path: Path) -> None:
    """Greedy, then beam with two outputs: the translation, the n-best list and an attention
    table with one row per target piece and one column per source piece; then HTML typed in
    comes back as text (nothing from it becomes an element or runs)."""
    _require_browser()
    from playwright.sync_api import expect, sync_playwright

    loaded = load_run(reversal_run)
    sentence = "1 2 3 4 5"
    expected = translate_batch(loaded, build("search", "greedy", where="t"), [sentence])[0]
    with live_server(create_app(loaded)) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=ARGS,
            viewport={"width": 1000, "height": 700},
        )
        try:
            page = browser.new_page()
            page.goto(url + "/")
            expect(page.locator("#title")).to_have_text("seq2seq: tiny")
            page.fill("#source-text", sentence)
            page.click("#translate")
            expect(page.locator(".translation")).to_have_text(expected.text, timeout=20_000)
            table = page.locator("table.attention")
            expect(table).to_be_visible()
            assert table.locator("thead th").count() == len(expected.source_pieces) + 1
            rows = table.locator("tbody tr")
            assert rows.count() == len(expected.pieces[0]) + 1  # + </s>
            assert rows.nth(0).locator("td").count() == len(expected.source_pieces)
            assert table.locator("tbody th").first.text_content() == expected.pieces[0][0]
            page.screenshot(path=str(tmp_path / "greedy.png"), full_page=True)

            page.check("#search-beam")
            page.fill("#beam-size", "3")
            page.fill("#n-best", "2")
            page.click("#translate")
            expect(page.locator(".others li")).to_have_count(1, timeout=20_000)
            expect(page.locator("table.attention")).to_be_visible()
            page.screenshot(path=str(tmp_path / "beam.png"), full_page=True)

            markup = '<img src=x onerror="window.injected=1"><b>1 2</b>'
            page.check("#search-greedy")
            page.fill("#source-text", markup)
            page.click("#translate")
            expect(page.locator(".source")).to_have_text(markup, timeout=20_000)
            results = page.locator("#results")
            assert results.locator("img").count() == results.locator("b").count() == 0
            assert page.evaluate("window.injected") is None
        finally:
            browser.close()
    assert (tmp_path / "greedy.png").stat().st_size > 5000
