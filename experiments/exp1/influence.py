"""``rct influence RUN``: which training documents teach which direction, by influence functions.

:func:`run_influence` reads a finished experiment 1 run (``config.json``, the dataset, the
finetuned ``model/``), picks one held-out query per fact and direction (``n_facts`` facts per
subset), scores every query against every training document with EK-FAC influence
(:func:`interp.influence.ekfac_scores`, kronfluence) and with gradient similarity
(:func:`interp.influence.tracin_scores`), groups the scores by fact and order
(:mod:`analysis.influence`) and writes ``RUN/influence/``::

    summary.json, summary.md    groups per query set with 95% CIs over facts, the contrasts,
                                EK-FAC vs TracIn agreement, per-layer and per-token views
    scores.safetensors          ekfac, ekfac_per_layer, ekfac_per_token, tracin_dot,
                                tracin_cosine, tracin_per_layer ([query, document] first)
    queries.jsonl, documents.jsonl   what the rows and columns of the scores are
    groups.png|svg, layers.png|svg   figures
    influence.html              each query's top documents, tokens coloured by influence
    .kronfluence/               the fitted factors (reused by a rerun, resumed after a stop)

LoRA runs are refused: their training changed adapter weights, not the full layers scored.

Example::

    from experiments.exp1.influence import run_influence
    s = run_influence("runs/exp1-cpu", n_facts=15)
    s["ekfac"]["both"]["description_first"]["contrasts"]

CLI: ``rct influence RUN [--n-facts 15] [--layer-stride 3] [--no-tracin] [--device cpu]``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict, replace
from importlib.metadata import version
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from analysis.influence import (agreement, group_masks, influence_summary, layer_profile, per_query_groups,
                                standardise, token_roles, token_shares)
from analysis.influence_report import group_figure, influence_markdown, influence_page, layer_figure
from experiments.exp1.data import Example, load_exp1
from interp.errors import RctError
from interp.fileio import write_json, write_jsonl, write_text
from interp.influence import InfluenceConfig, ekfac_scores, tracin_scores, tracked_modules
from interp.models import load_model
from interp.tokens import encode_documents

# the defaults that keep `rct influence` on the CPU default run within 15 minutes on 2 cores
DEFAULT = InfluenceConfig(layer_stride=3, covariance_max_examples=400, lambda_max_examples=64)
N_FACTS = 15
QUERY_FILES = ("both_prompts_test", "p2d_prompts_test", "p2d_reverse_prompts_test", "d2p_prompts_test",
               "d2p_reverse_prompts_test")


def select_queries(ds: Any, n_facts: int | None) -> list[Example]:
    """One held-out query per fact and direction, for the first ``n_facts`` facts of each
    subset (None: all): both directions of Both facts, forward and reverse of the others."""
    out: list[Example] = []
    for stem in QUERY_FILES:
        facts: list[int] = []
        seen: set[tuple[int, str]] = set()
        for e in ds.files.get(stem, []):
            if e.fact_id not in facts:
                if n_facts is not None and len(facts) >= n_facts:
                    continue
                facts.append(e.fact_id)
            if (e.fact_id, e.order) not in seen:
                seen.add((e.fact_id, e.order))
                out.append(e)
    if not out:
        raise RctError(f"influence: the dataset has none of the test files {QUERY_FILES}")
    return out


def _meta(e: Example, index: int) -> dict[str, Any]:
    return {"index": index, "fact_id": e.fact_id, "subset": e.subset, "order": e.order, "name": e.name,
            "description": e.description, "prompt": e.prompt, "completion": e.completion}


def _doc_tokens(lm: Any, e: Example) -> tuple[list[str], list[tuple[int, int]]]:
    """Token strings and character spans in ``prompt + completion``, tokenised as training
    tokenises (BOS, prompt, then the completion on its own)."""
    tok = lm.tokenizer
    strs: list[str] = []
    spans: list[tuple[int, int]] = []
    if lm.bos_token_id is not None:
        strs.append(tok.decode([lm.bos_token_id]))
        spans.append((0, 0))
    for text, shift in ((e.prompt, 0), (e.completion, len(e.prompt))):
        enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
        strs += [tok.decode([t]) for t in enc["input_ids"]]
        spans += [(a + shift, b + shift) for a, b in enc["offset_mapping"]]
    return strs, spans


def _save_scores(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    from safetensors.torch import save_file

    tmp = path.with_name(f".{path.name}.tmp")
    save_file({k: v.contiguous().float() for k, v in tensors.items()}, str(tmp))
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def run_influence(run_dir: str | Path, n_facts: int | None = N_FACTS, config: InfluenceConfig = DEFAULT,
                  tracin: bool = True, per_token: bool = True, device: str = "cpu", page_top: int = 5,
                  progress: bool = True) -> dict[str, Any]:
    """Score, group and write ``RUN/influence`` (see the module docstring); returns the summary."""
    t_start = time.perf_counter()
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").exists():
        raise RctError(f"influence: {run_dir} is not a run directory (no config.json)")
    run_cfg = json.loads((run_dir / "config.json").read_text())
    ft = run_cfg.get("finetune", {})
    if ft.get("lora_rank", 0):
        raise RctError(f"influence: {run_dir} was finetuned with LoRA (finetune.lora_rank={ft['lora_rank']}); "
                       "influence over the full layers would not describe what training changed, so LoRA "
                       "runs are not supported")
    if not (run_dir / "model").exists():
        raise RctError(f"influence: {run_dir} has no finetuned model yet (no model/); finish the run first")
    ds = load_exp1(Path(run_cfg["data_dir"]) if run_cfg.get("data_dir") else run_dir / "data")
    train_ex = ds.train_examples()
    query_ex = select_queries(ds, n_facts)
    lm = load_model(str(run_dir / "model"), device=device, dtype="float32")
    train = encode_documents(lm, [(e.prompt, e.completion) for e in train_ex], ft.get("loss_on", "sequence"))
    queries = encode_documents(lm, [(e.prompt, e.completion) for e in query_ex], "completion")
    out = run_dir / "influence"
    out.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {"load": time.perf_counter() - t_start}
    ek = ekfac_scores(lm, train, queries, config, out / ".kronfluence", per_token=per_token, progress=progress)
    seconds.update({f"ekfac_{k}": v for k, v in ek.seconds.items()})
    tensors = {"ekfac": ek.total, "ekfac_per_layer": ek.per_layer}
    if ek.per_token is not None:
        tensors["ekfac_per_token"] = ek.per_token
    tr = None
    if tracin:
        t0 = time.perf_counter()
        tr = tracin_scores(lm, train, queries, tracked_modules(lm.hf, config.modules, config.layer_stride),
                           batch_size=config.batch_size, progress=progress, precision=config.precision)
        seconds["tracin"] = time.perf_counter() - t0
        tensors.update({"tracin_dot": tr.dot, "tracin_cosine": tr.cosine, "tracin_per_layer": tr.per_layer})
    _save_scores(out / "scores.safetensors", tensors)
    qm = [_meta(e, i) for i, e in enumerate(query_ex)]
    dm = [_meta(e, i) for i, e in enumerate(train_ex)]
    write_jsonl(out / "queries.jsonl", qm)
    write_jsonl(out / "documents.jsonl", dm)

    t0 = time.perf_counter()
    scores = ek.total.double().numpy()
    summary: dict[str, Any] = {
        "run": str(run_dir), "n_queries": len(qm), "n_documents": len(dm), "n_facts_per_subset": n_facts,
        "method": {"name": "EK-FAC influence (kronfluence)", "parameters":
                   f"{config.modules} linear layers of layers {ek.layers[0]}..{ek.layers[-1]} "
                   f"(every {config.layer_stride}), {len(ek.modules)} modules",
                   "config": asdict(config), "kronfluence": version("kronfluence"), "precision": ek.precision,
                   "measurement": "loss of the query's completion (summed over its tokens)",
                   "sign": "positive: a gradient step on the document lowers the query's loss"},
        "influence": influence_summary(scores, qm, dm, seed=config.seed),
        "layers": layer_profile(ek.per_layer.double().numpy(), ek.layers, qm, dm, seed=config.seed),
    }
    if tr is not None:
        summary["tracin"] = influence_summary(tr.dot.double().numpy(), qm, dm, seed=config.seed)
        summary["agreement"] = {
            "tracin_dot": agreement(scores, tr.dot.double().numpy(), qm, seed=config.seed),
            "tracin_cosine": agreement(scores, tr.cosine.double().numpy(), qm, seed=config.seed)}
    toks = [_doc_tokens(lm, e) for e in train_ex]
    if ek.per_token is not None:
        roles = [token_roles(spans, e.prompt + e.completion, e.name, e.description)
                 for (_, spans), e in zip(toks, train_ex)]
        summary["tokens"] = token_shares(ek.per_token.double().numpy(), scores, roles, qm, dm, seed=config.seed)
    z = standardise(scores)
    rows = per_query_groups(scores, qm, dm)
    z_by_set: dict[str, dict[str, list[float]]] = {}
    for q, r in zip(qm, rows):
        key = f"{q['subset']}: {'name' if q['order'] == 'name_first' else 'description'} first"
        for g, v in r["z"].items():
            if not np.isnan(v):
                z_by_set.setdefault(key, {}).setdefault(g, []).append(v)
    group_figure(z_by_set, out)
    layer_figure(summary["layers"], out)
    top = np.argsort(-scores, axis=1, kind="stable")[:, :page_top]
    group_of = lambda q, d: next(g for g, m in group_masks(q, [d]).items() if m[0])  # noqa: E731
    html = influence_page(qm, dm, top, scores, z, [t for t, _ in toks],
                          None if ek.per_token is None else ek.per_token.numpy(), group_of,
                          f"Top training documents per query: {run_dir.name}")
    write_text(out / "influence.html", html)
    seconds["analysis"] = time.perf_counter() - t0
    seconds["total"] = time.perf_counter() - t_start
    summary["seconds"] = seconds
    write_json(out / "summary.json", summary)
    write_text(out / "summary.md", influence_markdown(summary))
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="rct influence", description="Influence of training documents on "
                                "forward and reverse queries of an experiment 1 run")
    p.add_argument("run", type=Path, help="experiment 1 run directory")
    p.add_argument("--n-facts", type=int, default=N_FACTS, help="facts per subset queried (default %(default)s)")
    p.add_argument("--layer-stride", type=int, default=DEFAULT.layer_stride,
                   help="score every k-th layer's parameters (default %(default)s)")
    p.add_argument("--modules", choices=("mlp", "mlp+attn"), default=DEFAULT.modules)
    p.add_argument("--covariance-examples", type=int, default=DEFAULT.covariance_max_examples,
                   help="documents the covariance factors are fitted on (default %(default)s; 0 = all)")
    p.add_argument("--lambda-examples", type=int, default=DEFAULT.lambda_max_examples,
                   help="documents the eigenvalue correction is fitted on (default %(default)s)")
    p.add_argument("--no-tracin", action="store_true", help="skip the gradient-similarity baseline")
    p.add_argument("--no-tokens", action="store_true", help="skip per-token scores")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default=DEFAULT.precision,
                   help="passes in fp32 or under autocast; auto: bf16 where the device runs it fast (default)")
    p.add_argument("--seed", type=int, default=DEFAULT.seed)
    p.add_argument("--device", default="cpu")
    p.add_argument("--quiet", action="store_true")
    a = p.parse_args(argv)
    try:
        cfg = replace(DEFAULT, layer_stride=a.layer_stride, modules=a.modules, seed=a.seed, precision=a.precision,
                      covariance_max_examples=a.covariance_examples or None, lambda_max_examples=a.lambda_examples)
    except ValueError as e:
        p.error(str(e))
    s = run_influence(a.run, n_facts=a.n_facts, config=cfg, tracin=not a.no_tracin, per_token=not a.no_tokens,
                      device=a.device, progress=not a.quiet)
    print(influence_markdown(s))
    print(f"wrote {a.run / 'influence'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
