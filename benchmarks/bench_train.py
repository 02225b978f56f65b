"""Training throughput: the toolkit's finetuning loop vs Hugging Face ``Trainer``.

Same model, same documents in the same batches (``Trainer`` reads our epoch-0 batches in
order, so the padded lengths are the same), same batch size, optimizer, schedule, clipping
and precision. Tokens are counted as processed, padding included (that is what the FLOPs are
spent on), and as real tokens; the first ``--warmup`` steps are not timed. MFU = 6 *
parameters * tokens/s over the fp32 (and bf16) matmul peak measured in the same process.
``--grouping off`` gives plain shuffled batches: the padded-token fraction before length
grouping.

    .venv/bin/python benchmarks/bench_train.py --method ours --precision auto
    .venv/bin/python benchmarks/bench_train.py --method trainer --precision fp32 --grouping off
(``benchmarks/run_all.py`` runs every combination, each in its own process.)
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import torch

from experiments.exp1.data import Exp1DataConfig, generate_exp1
from experiments.finetune import FinetuneConfig, batch_order, encode_documents, finetune, padded_fraction
from interp import load_model
from interp.tokens import pad_batch, pad_id


def matmul_peak(dtype: torch.dtype, n: int = 2048, seconds: float = 0.75) -> float:
    """Best sustained GFLOP/s of an n x n matmul in ``dtype`` on this machine."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    best, t_end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        t0 = time.perf_counter()
        a @ b
        best = max(best, 2 * n**3 / (time.perf_counter() - t0) / 1e9)
    return best


def documents(n_docs: int, seed: int) -> list[tuple[str, str]]:
    docs = [(e.prompt, e.completion) for e in
            generate_exp1(Exp1DataConfig(n_facts=30, n_paraphrases=10)).train_examples()]
    order = torch.randperm(len(docs), generator=torch.Generator().manual_seed(seed)).tolist()
    return [docs[i] for i in order[:n_docs]]


def run_ours(lm, docs, cfg: FinetuneConfig) -> tuple[list[float], list[int], dict]:
    with tempfile.TemporaryDirectory() as tmp:
        log = finetune(lm, docs, cfg, Path(tmp), progress=False)
    return log["step_seconds"], log["step_tokens"], log["precision"]


def run_trainer(lm, docs, cfg: FinetuneConfig) -> tuple[list[float], list[int], dict]:
    from torch.utils.data import SequentialSampler
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from interp.precision import choose_precision

    precision = choose_precision(cfg.precision, "cpu" if lm.device.type == "cpu" else str(lm.device))
    # the same batches as ours: our epoch-0 batches, read sequentially
    enc = encode_documents(lm, docs, cfg.loss_on)
    order = [i for b in batch_order([len(x) for x, _ in enc], cfg, 0, cfg.batch_size) for i in b]
    rows = [{"input_ids": enc[i][0], "labels": enc[i][1]} for i in order]
    pad = pad_id(lm)

    def collate(batch):
        ids, mask, _ = pad_batch([r["input_ids"] for r in batch], pad, "right")
        labels, _, _ = pad_batch([r["labels"] for r in batch], -100, "right")
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}

    class Timer(TrainerCallback):
        def __init__(self) -> None:
            self.seconds: list[float] = []
            self.t0 = 0.0

        def on_step_begin(self, *a, **k):
            self.t0 = time.perf_counter()

        def on_step_end(self, *a, **k):
            self.seconds.append(time.perf_counter() - self.t0)

    class OrderedTrainer(Trainer):
        def _get_train_sampler(self, *args, **kwargs):
            return SequentialSampler(self.train_dataset)

    timer = Timer()
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp, per_device_train_batch_size=cfg.batch_size, num_train_epochs=1,
            learning_rate=cfg.lr, warmup_steps=cfg.warmup_steps, lr_scheduler_type="linear",
            weight_decay=cfg.weight_decay, max_grad_norm=cfg.max_grad_norm,
            bf16=precision.value == "bf16", fp16=precision.value == "fp16", use_cpu=lm.device.type == "cpu", save_strategy="no",
            report_to=[], logging_strategy="no", dataloader_num_workers=0, seed=cfg.seed,
            remove_unused_columns=False, disable_tqdm=True)
        OrderedTrainer(model=lm.hf, args=args, train_dataset=rows, data_collator=collate,
                       callbacks=[timer]).train()
    tokens = [collate(rows[i:i + cfg.batch_size])["input_ids"].numel()
              for i in range(0, len(rows), cfg.batch_size)]
    return timer.seconds, tokens, precision.to_dict()


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--method", choices=["ours", "trainer"], required=True)
    ap.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto")
    ap.add_argument("--grouping", choices=["on", "off"], default="on", help="length-grouped batches")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=16)
    args = ap.parse_args(argv)
    lm = load_model(args.model)
    cfg = FinetuneConfig(batch_size=args.batch_size, epochs=1, precision=args.precision, warmup_steps=2,
                         group_by_length=args.grouping == "on")
    docs = documents(args.steps * args.batch_size, cfg.seed)
    lengths = [len(x) for x, _ in encode_documents(lm, docs, cfg.loss_on)]
    padded = padded_fraction(lengths, batch_order(lengths, cfg, 0, cfg.batch_size))
    seconds, tokens, precision = (run_ours if args.method == "ours" else run_trainer)(lm, docs, cfg)
    timed_s, timed_tok = sum(seconds[args.warmup:]), sum(tokens[args.warmup:len(seconds)])
    n_params = sum(p.numel() for p in lm.hf.parameters())
    peak32 = matmul_peak(torch.float32)
    peak = matmul_peak(torch.bfloat16) if precision["value"] == "bf16" else peak32
    tok_s = timed_tok / timed_s
    flops = 6 * n_params * tok_s / 1e9
    out = {"method": args.method, "precision": precision["value"], "precision_reason": precision["reason"],
           "grouping": args.grouping, "padded_fraction": padded, "steps_timed": len(seconds) - args.warmup,
           "seconds_per_step": timed_s / (len(seconds) - args.warmup), "tokens_per_s": tok_s,
           "real_tokens_per_s": tok_s * (1 - padded), "params": n_params, "achieved_gflops": flops,
           "peak_gflops": peak, "peak_fp32_gflops": peak32,
           "mfu": flops / peak, "mfu_vs_fp32_peak": flops / peak32,
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
