"""One page per run: ``RUN/index.html``, written at the end of every command that writes a run.

A run folder holds Markdown tables, JSON, PNG/SVG figures and separate HTML pages. The index
puts them on one offline page: the run's tables (its top-level ``*.md``, rendered), its
figures (top-level PNGs, by relative path), the manifest (versions, device and precision with
their reasons, per-stage seconds), links to the inside view (``analysis/``), the comparisons
(``compare*/``), the influence pages and the cells of a sweep or a mitigation comparison, and
the command that rebuilds the page. Every link is relative and points inside the run folder;
nothing is fetched. ``tests/test_run_index.py`` opens it in headless Chromium.

Example::

    from experiments.core.run_index import write_index
    write_index("runs/exp1-cpu")          # -> runs/exp1-cpu/index.html
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any

from interp.fileio import write_text

REBUILD = {"exp1": "rct report {run}", "sweep": "rct sweep-report {run}",
           "mitigations": "rct mitigations-report {run}", "exp3": "rct exp3 --out {run} --resume",
           "exp2": "rct exp2 --out {run} --resume"}
# sub-folders whose pages and summaries the index links to, with a title
SECTIONS = (("analysis", "Inside the model (rct analyse)"), ("compare", "Cursed against cured (rct compare)"),
            ("influence", "Influence functions (rct influence)"),
            ("influence-first-token", "Influence, first answer token"))

_CSS = """body{font:15px/1.45 system-ui,sans-serif;max-width:1100px;margin:1.5em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.6em 0;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px;text-align:left}
th{background:#f3f3f3}code,pre{background:#f6f6f6;padding:1px 4px;border-radius:3px}pre{padding:8px;overflow:auto}
img{max-width:100%;border:1px solid #ddd;margin:.4em 0}h1{font-size:1.6em}h2{border-bottom:1px solid #ddd}
.muted{color:#666}blockquote{border-left:3px solid #ccc;margin:.5em 0;padding:0 .8em;color:#444}"""


def _inline(text: str) -> str:
    """Escape, then code spans, bold and links (relative links only; others stay text)."""
    out = html.escape(text, quote=False)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    out = re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", out)

    def link(m: re.Match[str]) -> str:
        label, target = m.group(1), m.group(2)
        if re.match(r"^[a-z]+:", target) or target.startswith(("/", "..")):
            return label  # outside the run folder: no link
        return f'<a href="{html.escape(target)}">{label}</a>'
    return re.sub(r"\[([^\]]+)\]\(([^)\s]+)\)", link, out)


def markdown_html(md: str) -> str:
    """The Markdown the toolkit writes (headings, tables, lists, quotes, code fences,
    paragraphs) as HTML; not a general Markdown renderer."""
    lines, out, i = md.splitlines(), [], 0
    while i < len(lines):
        ln = lines[i]
        if ln.startswith("```"):
            j = i + 1
            while j < len(lines) and not lines[j].startswith("```"):
                j += 1
            out.append("<pre>" + html.escape("\n".join(lines[i + 1:j])) + "</pre>")
            i = j + 1
        elif m := re.match(r"^(#{1,6}) (.*)", ln):
            level = min(len(m.group(1)) + 1, 6)  # the page's own title is the only h1
            out.append(f"<h{level}>{_inline(m.group(2))}</h{level}>")
            i += 1
        elif ln.startswith("|"):
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                cells = [c.strip() for c in lines[i].strip().strip("|").split("|")]
                if not all(re.fullmatch(r":?-{2,}:?", c) for c in cells if c):
                    rows.append(cells)
                i += 1
            if rows:
                head = "".join(f"<th>{_inline(c)}</th>" for c in rows[0])
                body = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in rows[1:])
                out.append(f"<table><tr>{head}</tr>{body}</table>")
        elif re.match(r"^\s*[-*] ", ln):
            items = []
            while i < len(lines) and (re.match(r"^\s*[-*] ", lines[i]) or (lines[i].startswith("  ") and items)):
                if re.match(r"^\s*[-*] ", lines[i]):
                    items.append(re.sub(r"^\s*[-*] ", "", lines[i]))
                else:
                    items[-1] += " " + lines[i].strip()
                i += 1
            out.append("<ul>" + "".join(f"<li>{_inline(t)}</li>" for t in items) + "</ul>")
        elif ln.startswith(">"):
            quote = []
            while i < len(lines) and lines[i].startswith(">"):
                quote.append(lines[i].lstrip("> "))
                i += 1
            out.append(f"<blockquote>{_inline(' '.join(quote))}</blockquote>")
        elif ln.strip():
            para = []
            while i < len(lines) and lines[i].strip() and not re.match(r"^(#|\||```|>|\s*[-*] )", lines[i]):
                para.append(lines[i].strip())
                i += 1
            out.append(f"<p>{_inline(' '.join(para))}</p>")
        else:
            i += 1
    return "\n".join(out)


def _manifest_html(man: dict[str, Any]) -> str:
    rows = []
    versions = man.get("versions") or {}
    if versions:
        rows.append(("versions", ", ".join(f"{k} {v}" for k, v in versions.items())))
    for key in ("commit", "model", "device", "precision", "eval_dtype", "seeds", "config_hash"):
        v = man.get(key)
        if isinstance(v, dict) and "value" in v:
            rows.append((key, f"{v['value']} ({v.get('reason', '')})"))
        elif v is not None:
            rows.append((key, json.dumps(v) if isinstance(v, (dict, list)) else str(v)))
    stages = man.get("stages") or {}
    body = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in rows)
    st = "".join(f"<tr><td>{html.escape(name)}</td><td>{info.get('seconds', '')}</td></tr>"
                 for name, info in stages.items() if isinstance(info, dict))
    return (f"<table><tr><th>manifest</th><th></th></tr>{body}</table>"
            + (f"<table><tr><th>stage</th><th>seconds</th></tr>{st}</table>" if st else ""))


def _links(run: Path) -> list[tuple[str, str]]:
    found = []
    for sub, title in SECTIONS:
        for folder in sorted(run.glob(f"{sub}*")) if sub == "compare" else [run / sub]:
            if not folder.is_dir():
                continue
            label = title if folder.name == sub else f"{title}: {folder.name}"
            for page in sorted(folder.glob("*.html")) + sorted((folder / "pages").glob("*.html")):
                found.append((f"{label}: {page.name}", str(page.relative_to(run))))
            if (folder / "summary.md").is_file():
                found.append((f"{label}: summary.md", str((folder / "summary.md").relative_to(run))))
    cells = run / "cells"
    if cells.is_dir():
        for c in sorted(p for p in cells.iterdir() if p.is_dir()):
            target = c / "index.html" if (c / "index.html").is_file() else c / "table1.md"
            if target.is_file():
                found.append((f"cell {c.name}", str(target.relative_to(run))))
    return found


def refresh_parent(folder: str | Path) -> Path | None:
    """After an analysis wrote ``folder`` inside a run (``RUN/analysis``, ``RUN/compare``...),
    rebuild that run's index so that it links the new pages; None when the parent is no run."""
    parent = Path(folder).resolve().parent
    return write_index(parent) if (parent / "manifest.json").is_file() else None


def write_index(run: str | Path) -> Path:
    """Write ``run/index.html`` (see the module docstring) and return its path."""
    run = Path(run)
    man = json.loads((run / "manifest.json").read_text()) if (run / "manifest.json").is_file() else {}
    kind = man.get("kind", "run")
    parts = [f"<h1>{html.escape(kind)} run: {html.escape(run.name)}</h1>",
             f'<p class="muted">Rebuild this page: <code>{html.escape(REBUILD.get(kind, "rct report {run}").format(run=run))}</code>'
             f"; the run's files are listed below. Every link stays inside this folder.</p>"]
    for md in sorted(run.glob("*.md")):
        parts.append(f'<section><p class="muted">{html.escape(md.name)}</p>{markdown_html(md.read_text())}</section>')
    figures = sorted(run.glob("*.png"))
    if figures:
        parts.append("<h2>Figures</h2>" + "".join(
            f'<p><img src="{html.escape(f.name)}" alt="{html.escape(f.stem)}"><br>'
            f'<span class="muted">{html.escape(f.name)}'
            + (f' (<a href="{html.escape(f.with_suffix(".svg").name)}">SVG</a>)' if f.with_suffix(".svg").is_file() else "")
            + "</span></p>" for f in figures))
    links = _links(run)
    if links:
        parts.append("<h2>Analyses and pages</h2><ul>" + "".join(
            f'<li><a href="{html.escape(href)}">{html.escape(label)}</a></li>' for label, href in links) + "</ul>")
    parts.append("<h2>Manifest</h2>" + _manifest_html(man))
    files = [p for p in ("config.json", "manifest.json", "summary.json", "train_log.json") if (run / p).is_file()]
    if files:
        parts.append("<p>Files: " + ", ".join(f'<a href="{f}">{f}</a>' for f in files) + "</p>")
    page = (f"<!doctype html><html><head><meta charset=\"utf-8\"><title>{html.escape(run.name)}</title>"
            f"<style>{_CSS}</style></head><body>{''.join(parts)}</body></html>")
    return write_text(run / "index.html", page)
