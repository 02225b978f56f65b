"""Self-contained HTML pages (circuitsvis) that render with no network.

circuitsvis loads its JavaScript from a CDN by default; its wheel also ships the bundle
(``circuitsvis/dist/cdn/iife.js``, the file its ``render_local`` inlines). A page here
inlines that bundle once and then calls ``CircuitsVis.render(id, CircuitsVis.<Element>,
props)`` for each visualisation, so it opens from disk, offline.

:func:`write_fact_page` shows, for each query about one fact (forward and reverse): the
prompt tokens coloured by gradient x input embedding for the first answer token, and the
attention patterns of one layer's heads.

Example::

    html = html_page("demo", [Block("tokens", "ColoredTokens", {"tokens": ["a", "b"],
                                                                 "values": [0.1, -0.3]})])
    Path("demo.html").write_text(html)
"""

from __future__ import annotations

import html as html_lib
import json
from dataclasses import dataclass, field
from functools import lru_cache
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence
from uuid import uuid4

import torch

from interp.hooks import hook_name
from interp.recording import Query, record
from interp.tokens import encode_prompt

if TYPE_CHECKING:
    from interp.models import LoadedModel


@lru_cache(maxsize=1)
def circuitsvis_source() -> str:
    """The circuitsvis browser bundle (IIFE exposing ``CircuitsVis``), safe to inline."""
    spec = find_spec("circuitsvis")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("circuitsvis is not installed: pip install circuitsvis")
    path = Path(list(spec.submodule_search_locations)[0]) / "dist" / "cdn" / "iife.js"
    if not path.exists():
        raise RuntimeError(f"circuitsvis bundle missing at {path}; reinstall circuitsvis")
    return path.read_text(encoding="utf-8").replace("</script", "<\\/script")


@dataclass(frozen=True)
class Block:
    """One section: a heading, optionally a circuitsvis element with props, optional text."""

    heading: str
    element: str | None = None  # e.g. "ColoredTokens", "AttentionHeads"
    props: dict[str, Any] = field(default_factory=dict)
    text: str = ""


def _props_json(props: dict[str, Any]) -> str:
    clean = {k: (v.tolist() if isinstance(v, torch.Tensor) else v) for k, v in props.items()
             if v is not None}
    return json.dumps(clean).replace("</", "<\\/")


def html_page(title: str, blocks: Sequence[Block]) -> str:
    """A complete offline HTML document with the circuitsvis bundle inlined once."""
    body, calls = [], []
    for b in blocks:
        body.append(f"<h2>{html_lib.escape(b.heading)}</h2>")
        if b.text:
            body.append(f"<p>{html_lib.escape(b.text)}</p>")
        if b.element:
            uid = "circuits-vis-" + uuid4().hex[:12]
            body.append(f'<div id="{uid}" class="cv" style="margin: 15px 0;"></div>')
            calls.append(f'CircuitsVis.render("{uid}", CircuitsVis.{b.element}, {_props_json(b.props)});')
    return (
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
        f"<title>{html_lib.escape(title)}</title>"
        "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}</style></head><body>"
        f"<h1>{html_lib.escape(title)}</h1>\n" + "\n".join(body)
        + f"\n<script>\n{circuitsvis_source()}\n</script>\n<script>\n" + "\n".join(calls)
        + "\n</script>\n</body></html>\n"
    )


def token_attribution(lm: LoadedModel, queries: Sequence[Query]) -> list[tuple[list[str], list[float]]]:
    """Per prompt token: gradient x embedding (summed over d_model) of the first answer token's
    log-prob. Returns (token strings, values) per query."""
    emb = hook_name("embed")
    rec = record(lm, queries, [emb], positions=("all",), grad="first")
    rows = rec.rows("all")
    gxa = (rec.act(emb, "all") * rec.grad(emb, "all")).sum(-1)  # [rows]
    out = []
    for qi, q in enumerate(rec.queries):
        keep = (rows[:, 0] == qi) & (rows[:, 1] < q["prompt_len"])
        ids = encode_prompt(lm, q["prompt"])
        out.append(([lm.tokenizer.decode([t]) for t in ids], gxa[keep].tolist()))
    return out


def attention_pattern(lm: LoadedModel, prompt: str, layer: int) -> torch.Tensor:
    """``[n_heads, pos, pos]`` attention pattern of ``layer`` on the prompt."""
    n_layers = lm.bridge.cfg.n_layers
    if not 0 <= int(layer) < n_layers:
        raise ValueError(f"layer {layer} out of range: the model has {n_layers} layers, 0-{n_layers - 1}")
    ids = torch.tensor([encode_prompt(lm, prompt)], device=lm.device)
    name, got = hook_name("pattern", layer), {}

    def grab(x: torch.Tensor, hook: Any) -> None:
        got["p"] = x[0].detach().float().cpu()  # [heads, q, k]

    with torch.no_grad(), lm.bridge.hooks(fwd_hooks=[(name, grab)]):
        lm.bridge(ids)
    if "p" not in got:
        raise RuntimeError(f"hook {name} did not fire")
    return got["p"]


def write_fact_page(lm: LoadedModel, title: str, queries: Sequence[Query], labels: Sequence[str],
                    layer: int, path: str | Path, notes: Sequence[str] = ()) -> Path:
    """One page: per query, token attribution and the attention heads of ``layer``."""
    from interp.fileio import write_text

    n_layers = lm.bridge.cfg.n_layers
    if not 0 <= int(layer) < n_layers:  # before any work
        raise ValueError(f"write_fact_page: layer {layer} out of range: the model has {n_layers} layers, "
                         f"0-{n_layers - 1}")

    blocks: list[Block] = []
    for (tokens, values), q, label, note in zip(token_attribution(lm, queries), queries, labels,
                                                list(notes) + [""] * len(queries)):
        lim = max(1e-6, max(abs(v) for v in values))
        blocks.append(Block(f"{label}: {q.prompt!r} -> {q.target!r}", "ColoredTokens",
                            {"tokens": tokens, "values": values, "minValue": -lim, "maxValue": lim},
                            f"grad x embedding for the first answer token. {note}"))
        blocks.append(Block(f"{label}: attention, layer {layer}", "AttentionHeads",
                            {"tokens": tokens, "attention": attention_pattern(lm, q.prompt, layer),
                             "maskUpperTri": True}))
    return write_text(path, html_page(title, blocks))
