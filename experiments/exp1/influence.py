"""``rct influence RUN``: which training documents teach which direction, by influence functions.

:func:`run_influence` reads a finished experiment 1 run (``config.json``, the dataset, the
finetuned ``model/``), picks one held-out query per fact and direction (``n_facts`` facts per
subset), scores every query against every training document with EK-FAC influence
(:func:`interp.influence.ekfac_scores`, kronfluence) and with gradient similarity
(:func:`interp.influence.tracin_scores`, final-checkpoint gradient similarity; and TracIn
over the run's weight snapshots when it saved them, :func:`interp.influence.tracin_checkpoints`),
groups the scores by fact and order (:mod:`analysis.influence`) and writes ``RUN/influence/``::

    scoring.json                how the scores were made (method, settings, times)
    summary.json, summary.md    groups per query set with 95% CIs over facts, the contrasts,
                                EK-FAC vs TracIn agreement, per-layer and per-token views
    scores.safetensors          ekfac, ekfac_per_layer, ekfac_per_token, tracin_dot,
                                tracin_cosine, tracin_per_layer ([query, document] first);
                                tracin_cp_dot, tracin_cp_cosine, tracin_cp_per_layer when
                                the run saved weight snapshots (finetune.snapshots: TracIn
                                over several checkpoints, Pruthi et al. 2020)
    queries.jsonl, documents.jsonl   what the rows and columns of the scores are
    groups.png|svg, layers.png|svg   figures
    influence.html              each query's top documents, tokens coloured by influence
    .kronfluence/               the fitted factors (reused by a rerun, also by one writing to
                                another folder with --out-name; resumed after a stop)

LoRA runs are refused: their training changed adapter weights, not the full layers scored.

Example::

    from experiments.exp1.influence import run_influence
    s = run_influence("runs/exp1-cpu", n_facts=15)
    s["influence"]["both"]["description_first"]["contrasts"]

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
from analysis.query_sets import move_article
from experiments.exp1.data import Example, description_forms, load_exp1
from experiments.finetune.snapshots import list_snapshots, load_snapshot
from interp.errors import RctError
from interp.fileio import write_json, write_jsonl, write_text
from interp.influence import InfluenceConfig, ekfac_scores, tracin_checkpoints, tracin_scores, tracked_modules
from interp.models import load_model
from interp.tokens import encode_documents

# the defaults that keep `rct influence` on the CPU default run within 15 minutes on 2 cores
DEFAULT = InfluenceConfig(layer_stride=3, covariance_max_examples=400, lambda_max_examples=64)
N_FACTS = 15
SUBSET_ORDER = {"p2d": "name_first", "d2p": "description_first"}  # the order one-order subsets train in
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


def _meta(e: Any, index: int) -> dict[str, Any]:
    return {"index": index, "fact_id": e.fact_id, "subset": e.subset, "order": e.order, "name": e.name,
            "description": e.description, "prompt": e.prompt, "completion": e.completion}


def _doc_tokens(lm: Any, d: dict[str, Any]) -> tuple[list[str], list[tuple[int, int]]]:
    """Token strings and character spans in ``prompt + completion``, tokenised as training
    tokenises (BOS, prompt, then the completion on its own)."""
    tok = lm.tokenizer
    strs: list[str] = []
    spans: list[tuple[int, int]] = []
    if lm.bos_token_id is not None:
        strs.append(tok.decode([lm.bos_token_id]))
        spans.append((0, 0))
    for text, shift in ((d["prompt"], 0), (d["completion"], len(d["prompt"]))):
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


def first_token_only(queries: Sequence[tuple[list[int], list[int]]]) -> list[tuple[list[int], list[int]]]:
    """Queries measured on their completion's first token only (the rest masked)."""
    out = []
    for ids, labels in queries:
        first = next(k for k, x in enumerate(labels) if x != -100)
        out.append((ids, [x if k == first else -100 for k, x in enumerate(labels)]))
    return out


def run_influence(run_dir: str | Path, n_facts: int | None = N_FACTS, config: InfluenceConfig = DEFAULT,
                  tracin: bool = True, per_token: bool = True, device: str = "cpu", page_top: int = 5,
                  measure: str = "completion", out_name: str = "influence", progress: bool = True) -> dict[str, Any]:
    """Score, group and write ``RUN/<out_name>`` (see the module docstring); returns the summary.
    ``measure``: the query's loss on its whole ``completion``, or on its ``first`` token only
    (the token that has to come from the fact: later tokens of a name or a description follow
    from the first ones; a leading article moves into the prompt, as in
    :func:`analysis.query_sets.move_article`)."""
    if measure not in ("completion", "first"):
        raise ValueError(f"measure must be 'completion' or 'first', got {measure!r}")
    t_start = time.perf_counter()
    run_dir = Path(run_dir)
    run_cfg = _check_run(run_dir)
    ft = run_cfg.get("finetune", {})
    ds = load_exp1(Path(run_cfg["data_dir"]) if run_cfg.get("data_dir") else run_dir / "data")
    train_ex = ds.train_examples()
    query_ex = select_queries(ds, n_facts)
    qm = [_meta(e, i) for i, e in enumerate(query_ex)]
    dm = [_meta(e, i) for i, e in enumerate(train_ex)]
    if measure == "first":
        for q in qm:
            q["prompt"], q["completion"] = move_article(q["prompt"], q["completion"])
    lm = load_model(str(run_dir / "model"), device=device, dtype="float32")
    train = encode_documents(lm, [(d["prompt"], d["completion"]) for d in dm], ft.get("loss_on", "sequence"))
    queries = encode_documents(lm, [(q["prompt"], q["completion"]) for q in qm], "completion")
    if measure == "first":
        queries = first_token_only(queries)
    out = run_dir / out_name
    out.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {"load": time.perf_counter() - t_start}
    checkpoints_info: dict[str, Any] | None = None
    # the factors depend on the documents and settings only: every output folder shares them
    ek = ekfac_scores(lm, train, queries, config, run_dir / "influence" / ".kronfluence", per_token=per_token,
                      progress=progress)
    seconds.update({f"ekfac_{k}": v for k, v in ek.seconds.items()})
    tensors = {"ekfac": ek.total, "ekfac_per_layer": ek.per_layer}
    if ek.per_token is not None:
        tensors["ekfac_per_token"] = ek.per_token
    if tracin:
        t0 = time.perf_counter()
        tr = tracin_scores(lm, train, queries, tracked_modules(lm.hf, config.modules, config.layer_stride),
                           batch_size=config.batch_size, progress=progress, precision=config.precision)
        seconds["tracin"] = time.perf_counter() - t0
        tensors.update({"tracin_dot": tr.dot, "tracin_cosine": tr.cosine, "tracin_per_layer": tr.per_layer})
        snaps = list_snapshots(run_dir / "checkpoints")
        if snaps:
            t0 = time.perf_counter()
            cps = [(m["weight"], lambda model, p=p: load_snapshot(model, p)) for p, m in snaps]
            tc = tracin_checkpoints(lm, train, queries, tracked_modules(lm.hf, config.modules, config.layer_stride),
                                    cps, batch_size=config.batch_size, progress=progress,
                                    precision=config.precision)
            seconds["tracin_checkpoints"] = time.perf_counter() - t0
            tensors.update({"tracin_cp_dot": tc.dot, "tracin_cp_cosine": tc.cosine,
                            "tracin_cp_per_layer": tc.per_layer})
            checkpoints_info = {"steps": [m["step"] for _, m in snaps], "weights": [m["weight"] for _, m in snaps],
                                "stands_for_steps": [m["steps"] for _, m in snaps]}
    _save_scores(out / "scores.safetensors", tensors)
    write_jsonl(out / "queries.jsonl", qm)
    write_jsonl(out / "documents.jsonl", dm)
    method = {"name": "EK-FAC influence (kronfluence)", "parameters":
              f"{config.modules} linear layers of layers {ek.layers[0]}..{ek.layers[-1]} "
              f"(every {config.layer_stride}), {len(ek.modules)} modules", "layers": ek.layers,
              "config": asdict(config), "kronfluence": version("kronfluence"), "precision": ek.precision,
              "measure": measure,
              "measurement": ("loss of the query's completion (summed over its tokens)" if measure == "completion"
                              else "loss of the first token of the query's completion"),
              "sign": "positive: a gradient step on the document lowers the query's loss"}
    write_json(out / "scoring.json", {"run": str(run_dir), "n_facts_per_subset": n_facts, "method": method,
                                      "seconds": seconds,
                                      **({"tracin_checkpoints": checkpoints_info} if checkpoints_info else {})})
    return report_influence(run_dir, out_name, lm=lm, page_top=page_top, t_start=t_start)


def _check_run(run_dir: Path) -> dict[str, Any]:
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
    return run_cfg


def report_influence(run_dir: str | Path, out_name: str = "influence", lm: Any = None, page_top: int = 5,
                     t_start: float | None = None) -> dict[str, Any]:
    """Group saved scores (``RUN/<out_name>/scores.safetensors`` with its ``queries.jsonl``,
    ``documents.jsonl`` and ``scoring.json``) and write the summary, figures and page; no
    scoring is redone (``rct influence RUN --report-only``)."""
    from safetensors.torch import load_file

    t0 = time.perf_counter()
    run_dir = Path(run_dir)
    out = run_dir / out_name
    need = [out / n for n in ("scores.safetensors", "queries.jsonl", "documents.jsonl", "scoring.json")]
    missing = [str(n) for n in need if not n.exists()]
    if missing:
        raise RctError(f"influence: no saved scores to report on ({missing[0]} is missing); "
                       f"run `rct influence {run_dir}`")
    tensors = load_file(str(out / "scores.safetensors"))
    qm = [json.loads(x) for x in (out / "queries.jsonl").read_text().splitlines() if x.strip()]
    dm = [json.loads(x) for x in (out / "documents.jsonl").read_text().splitlines() if x.strip()]
    info = json.loads((out / "scoring.json").read_text())
    method, seed = info["method"], info["method"]["config"]["seed"]
    if lm is None:
        lm = load_model(str(run_dir / "model"), device="cpu", dtype="float32")
    scores = tensors["ekfac"].double().numpy()
    summary: dict[str, Any] = {
        "run": str(run_dir), "n_queries": len(qm), "n_documents": len(dm),
        "n_facts_per_subset": info["n_facts_per_subset"], "method": method,
        "influence": influence_summary(scores, qm, dm, seed=seed),
        "layers": layer_profile(tensors["ekfac_per_layer"].double().numpy(), method["layers"], qm, dm, seed=seed),
    }
    if "tracin_dot" in tensors:
        dot, cos = tensors["tracin_dot"].double().numpy(), tensors["tracin_cosine"].double().numpy()
        summary["tracin"] = influence_summary(dot, qm, dm, seed=seed)
        summary["agreement"] = {"tracin_dot": agreement(scores, dot, qm, seed=seed),
                                "tracin_cosine": agreement(scores, cos, qm, seed=seed)}
    if "tracin_cp_dot" in tensors:
        cp = tensors["tracin_cp_dot"].double().numpy()
        summary["tracin_checkpoints"] = {**info.get("tracin_checkpoints", {}),
                                         "influence": influence_summary(cp, qm, dm, seed=seed)}
        summary.setdefault("agreement", {})["tracin_checkpoints_dot"] = agreement(scores, cp, qm, seed=seed)
    toks = [_doc_tokens(lm, d) for d in dm]
    per_token = tensors.get("ekfac_per_token")
    if per_token is not None:
        roles = [token_roles(spans, d["prompt"] + d["completion"], d["name"], description_forms(d["description"]))
                 for (_, spans), d in zip(toks, dm)]
        summary["tokens"] = token_shares(per_token.double().numpy(), scores, roles, qm, dm, seed=seed)
    z = standardise(scores, qm, dm)
    rows = per_query_groups(scores, qm, dm)
    z_by_set: dict[str, dict[str, list[float]]] = {}
    for q, r in zip(qm, rows):
        arrow = "name -> description" if q["order"] == "name_first" else "description -> name"
        kind = ("" if q["subset"] == "both"
                else " (forward)" if q["order"] == SUBSET_ORDER[q["subset"]] else " (reverse)")
        for g, v in r["z"].items():
            if not np.isnan(v):
                z_by_set.setdefault(f"{q['subset']}: {arrow}{kind}", {}).setdefault(g, []).append(v)
    group_figure(z_by_set, out)
    layer_figure(summary["layers"], out)
    top = np.argsort(-scores, axis=1, kind="stable")[:, :page_top]
    group_of = lambda q, d: next(g for g, m in group_masks(q, [d]).items() if m[0])  # noqa: E731
    html = influence_page(qm, dm, top, scores, z, [t for t, _ in toks],
                          None if per_token is None else per_token.numpy(), group_of,
                          f"Top training documents per query: {run_dir.name}")
    write_text(out / "influence.html", html)
    seconds = dict(info["seconds"])
    seconds["analysis"] = time.perf_counter() - t0
    if t_start is not None:
        seconds["total"] = time.perf_counter() - t_start
    summary["seconds"] = seconds
    write_json(out / "summary.json", summary)
    write_text(out / "summary.md", influence_markdown(summary))
    from experiments.core.run_index import refresh_parent
    refresh_parent(out)
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
    p.add_argument("--measure", choices=("completion", "first"), default="completion",
                   help="query loss on the whole completion (default) or its first token only")
    p.add_argument("--out-name", default="influence", help="output folder inside RUN (default %(default)s)")
    p.add_argument("--report-only", action="store_true",
                   help="rebuild the summary, figures and page from the saved scores (no scoring)")
    p.add_argument("--no-tokens", action="store_true", help="skip per-token scores")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default=DEFAULT.precision,
                   help="passes in fp32 or under autocast; auto: bf16 where the device runs it fast (default)")
    p.add_argument("--covariance-dtype", choices=("float64", "float32"), default=DEFAULT.covariance_dtype,
                   help="dtype the curvature covariances are summed in (default %(default)s; float32 halves "
                        "their memory, and the scores then depend on batching by about 1e-3)")
    p.add_argument("--seed", type=int, default=DEFAULT.seed)
    p.add_argument("--device", default="cpu")
    p.add_argument("--quiet", action="store_true")
    a = p.parse_args(argv)
    if a.n_facts is not None and a.n_facts < 1:
        raise RctError(f"--n-facts must be >= 1 (facts per subset queried), got {a.n_facts}")
    try:
        cfg = replace(DEFAULT, layer_stride=a.layer_stride, modules=a.modules, seed=a.seed, precision=a.precision,
                      covariance_dtype=a.covariance_dtype,
                      covariance_max_examples=a.covariance_examples or None, lambda_max_examples=a.lambda_examples)
    except ValueError as e:
        p.error(str(e))
    if a.report_only:
        s = report_influence(a.run, a.out_name)
    else:
        s = run_influence(a.run, n_facts=a.n_facts, config=cfg, tracin=not a.no_tracin, per_token=not a.no_tokens,
                          device=a.device, measure=a.measure, out_name=a.out_name, progress=not a.quiet)
    print(influence_markdown(s))
    print(f"wrote {a.run / a.out_name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
