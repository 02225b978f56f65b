"""Experiment 1 evaluation: the toolkit's batched evaluation vs one prompt at a time.

600 held-out prompts with name targets (same-order DescriptionToName and reverse
NameToDescription), by default on the base model and the generated default dataset; pass
``--model runs/exp1-cpu/model --data runs/exp1-cpu/data`` to use a finetuned model, whose
exact matches make the identity check meaningful (``run_all.py`` does when that run exists). The baseline evaluates the way a per-prompt script does:
``model.generate`` on one prompt, then one forward pass per scored completion: the target
(the paper's protocol: exact match + the target's log-prob), and the random-name control
(timed apart, so both protocols get a ratio from one baseline run). Both use the same tokenisation, so the metrics must be
identical: the script checks every exact-match flag and every log-prob.

    .venv/bin/python benchmarks/bench_eval.py --method both
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import torch

from experiments.exp1.data import Exp1DataConfig, generate_exp1, load_exp1
from experiments.core.evaluate import exact_match
from experiments.exp1.evaluate import EvalConfig, evaluate_exp1
from interp import load_model
from interp.tokens import encode_pair, encode_prompt

FILES = ("d2p_prompts_test", "p2d_reverse_prompts_test")


@torch.no_grad()
def one_at_a_time(lm, records: list[dict]) -> tuple[list[dict], float, float]:
    """Per prompt: generate, score the target, score the random name. Returns the results,
    the seconds spent on generate + target score, and on the random-name scores."""
    def logprob(prompt: str, completion: str) -> float:
        p, c = encode_pair(lm, prompt, completion)
        logp = torch.log_softmax(lm.hf(torch.tensor([p + c])).logits[0].float(), -1)
        return sum(logp[len(p) - 1 + j, t].item() for j, t in enumerate(c))

    out, core, control = [], 0.0, 0.0
    for r in records:
        t0 = time.perf_counter()
        ids = torch.tensor([encode_prompt(lm, r["prompt"])])
        limit = len(encode_pair(lm, r["prompt"], r["target"])[1]) + 3
        gen = lm.hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=limit,
                             do_sample=False, pad_token_id=lm.tokenizer.eos_token_id,
                             eos_token_id=lm.tokenizer.eos_token_id)
        new = [t for t in gen[0, ids.shape[1]:].tolist() if t != lm.tokenizer.eos_token_id]
        res = {"exact": exact_match(lm.tokenizer.decode(new), r["target"]),
               "target_logprob": logprob(r["prompt"], r["target"])}
        t1 = time.perf_counter()
        res["random_logprob"] = logprob(r["prompt"], " " + r["random_name"])
        core, control = core + t1 - t0, control + time.perf_counter() - t1
        out.append(res)
    return out, core, control


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--method", choices=["toolkit", "one_at_a_time", "both"], default="both")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--data", help="dataset folder (default: the generated default dataset)")
    ap.add_argument("--records", help="toolkit records.jsonl to compare against (one_at_a_time)")
    args = ap.parse_args(argv)
    lm = load_model(args.model)
    ds = load_exp1(args.data) if args.data else generate_exp1(Exp1DataConfig())
    result: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        if args.method in ("toolkit", "both"):
            for control in (False, True):
                t0 = time.perf_counter()
                evaluate_exp1(lm, ds, EvalConfig(files=FILES, random_control=control), Path(tmp),
                              progress=False)
                result[f"toolkit_seconds{'_with_control' if control else ''}"] = time.perf_counter() - t0
            records = [json.loads(x) for x in (Path(tmp) / "records.jsonl").read_text().splitlines()]
            if args.records:
                Path(args.records).write_text("".join(json.dumps(r) + "\n" for r in records))
        else:
            records = [json.loads(x) for x in Path(args.records).read_text().splitlines()]
        if args.method in ("one_at_a_time", "both"):
            base, core, control = one_at_a_time(lm, records)
            result["one_at_a_time_seconds"] = core
            result["one_at_a_time_seconds_with_control"] = core + control
            result["exact_flags_identical"] = all(a["exact"] == b["exact"] for a, b in zip(records, base))
            result["max_logprob_diff"] = max(max(abs(a["target_logprob"] - b["target_logprob"]),
                                                 abs(a["random_logprob"] - b["random_logprob"]))
                                             for a, b in zip(records, base))
            result["exact_match_toolkit"] = sum(r["exact"] for r in records) / len(records)
            result["exact_match_one_at_a_time"] = sum(b["exact"] for b in base) / len(base)
    result["n_prompts"] = len(records)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
