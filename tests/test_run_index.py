"""RUN/index.html: one offline page per run, every link inside the run folder and resolving,
rendered by a real (headless) browser without console errors."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from experiments.cli import main
from experiments.core.run_index import markdown_html, write_index

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]


def _check_links(page: Path) -> list[str]:
    text = page.read_text()
    targets = re.findall(r'(?:href|src)="([^"]+)"', text)
    for t in targets:
        assert not re.match(r"^[a-z]+:", t) and not t.startswith(("/", "..")), f"{t} leaves the run folder"
        assert (page.parent / t).exists(), f"{t} does not resolve"
    assert "http://" not in text and "https://" not in text
    return targets


def _render(page: Path, tmp: Path) -> tuple[str, str]:
    res = subprocess.run([str(CHROMIUM), *FLAGS, f"--user-data-dir={tmp / 'profile'}", "--enable-logging=stderr",
                          "--v=0", "--virtual-time-budget=3000", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120)
    shutil.rmtree(tmp / "profile", ignore_errors=True)
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout, res.stderr


def test_an_exp1_run_and_a_sweep_get_one_page_each(tmp_path, capsys) -> None:
    run = tmp_path / "run"
    assert main(["exp1", "--preset", "smoke", "--out", str(run), "--quiet"]) == 0
    page = run / "index.html"
    text = page.read_text()
    assert "<table>" in text and "Exact match" in text and "figure4.png" in text
    assert f"rct report {run}" in text and "precision" in text and "finetune" in text  # manifest, stages
    targets = _check_links(page)
    assert "figure4.png" in targets and "config.json" in targets
    (run / "analysis").mkdir()
    (run / "analysis" / "summary.md").write_text("# x\n")
    write_index(run)
    assert "analysis/summary.md" in _check_links(page)
    if CHROMIUM.exists():
        dom, log = _render(page, tmp_path)
        assert "Exact match" in dom and "<img" in dom
        assert "Uncaught" not in log and ":ERROR:CONSOLE" not in log

    from experiments.exp1.run import preset
    from experiments.sweeps import SweepConfig, report_sweep, run_sweep

    sw = tmp_path / "sweep"
    run_sweep(SweepConfig(preset("smoke"), {"finetune.lr": [1e-3]}, [0]), sw, progress=False)
    report_sweep(sw)
    targets = _check_links(sw / "index.html")
    assert any(t.startswith("cells/") for t in targets) and "rct sweep-report" in (sw / "index.html").read_text()


def test_markdown_rendering_keeps_links_inside() -> None:
    out = markdown_html("# T\n\n| a | b |\n|---|---|\n| `x` | **y** |\n\n- [in](eval/m.json)\n- [out](https://e.org)\n\n> note")
    assert "<table><tr><th>a</th>" in out and "<code>x</code>" in out and "<b>y</b>" in out
    assert '<a href="eval/m.json">in</a>' in out and "https" not in out and "<blockquote>" in out
