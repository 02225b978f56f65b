"""The offline circuitsvis pages render in a real (headless) browser with no network."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from analysis.pages import Block, html_page

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]


def _dump_dom(page: Path, tmp: Path) -> str:
    res = subprocess.run(
        [str(CHROMIUM), *FLAGS, f"--user-data-dir={tmp / 'profile'}", "--virtual-time-budget=5000",
         "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout


@pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium absent (apt-get install -y chromium)")
def test_page_renders_offline(tmp_path: Path) -> None:
    tokens = ["<bos>", "The", " writer", " of", " Tides", " is"]
    attention = [[[1.0 if k <= q else 0.0 for k in range(6)] for q in range(6)]] * 2  # [head, q, k]
    html = html_page("render check", [
        Block("tokens", "ColoredTokens", {"tokens": tokens, "values": [0, .5, -.2, .1, .9, -.7]}),
        Block("heads", "AttentionHeads", {"tokens": tokens, "attention": attention}),
    ])
    assert "unpkg.com" not in html and not re.search(r"<script[^>]+src=", html)
    page = tmp_path / "page.html"
    page.write_text(html, encoding="utf-8")
    dom = _dump_dom(page, tmp_path)
    divs = re.findall(r'<div id="circuits-vis-[0-9a-f]+" class="cv"[^>]*>(.{0,400})', dom)
    assert len(divs) == 2
    assert all(d.startswith("<") for d in divs), "the JavaScript did not fill the containers"
    assert 'class="colored-tokens"' in dom and "Tides" in dom
    assert "Head Selector" in dom  # AttentionHeads' own DOM
    shutil.rmtree(tmp_path / "profile", ignore_errors=True)
