"""Training throughput: the toolkit's finetuning loop vs Hugging Face ``Trainer``.

Same model, same documents in the same order (so the same batches and padded lengths), same
batch size, optimizer, schedule, clipping and precision. Tokens are counted as processed,
padding included (that is what the FLOPs are spent on); the first ``--warmup`` steps are not
timed. MFU = 6 * parameters * tokens/s over the matmul peak measured in the same process.

    .venv/bin/python benchmarks/bench_train.py --method ours --precision bf16
    .venv/bin/python benchmarks/bench_train.py --method trainer --precision fp32
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

from experiments.exp1_data import Exp1DataConfig, generate_exp1
from experiments.finetune import FinetuneConfig, encode_documents, finetune
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


def run_ours(lm, docs, cfg: FinetuneConfig) -> tuple[list[float], list[int]]:
    with tempfile.TemporaryDirectory() as tmp:
        log = finetune(lm, docs, cfg, Path(tmp), progress=False)
    return log["step_seconds"], log["step_tokens"]


def run_trainer(lm, docs, cfg: FinetuneConfig) -> tuple[list[float], list[int]]:
    from torch.utils.data import SequentialSampler
    from transformers import Trainer, TrainerCallback, TrainingArguments

    # the same data order as ours: our epoch-0 permutation, then read sequentially
    order = torch.randperm(len(docs), generator=torch.Generator().manual_seed(cfg.seed)).tolist()
    enc = encode_documents(lm, docs, cfg.loss_on)
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
            bf16=cfg.precision == "bf16", use_cpu=lm.device.type == "cpu", save_strategy="no",
            report_to=[], logging_strategy="no", dataloader_num_workers=0, seed=cfg.seed,
            remove_unused_columns=False, disable_tqdm=True)
        OrderedTrainer(model=lm.hf, args=args, train_dataset=rows, data_collator=collate,
                       callbacks=[timer]).train()
    tokens = [collate(rows[i:i + cfg.batch_size])["input_ids"].numel()
              for i in range(0, len(rows), cfg.batch_size)]
    return timer.seconds, tokens


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--method", choices=["ours", "trainer"], required=True)
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="bf16")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=16)
    args = ap.parse_args(argv)
    lm = load_model(args.model)
    cfg = FinetuneConfig(batch_size=args.batch_size, epochs=1, precision=args.precision, warmup_steps=2)
    docs = documents(args.steps * args.batch_size, cfg.seed)
    seconds, tokens = (run_ours if args.method == "ours" else run_trainer)(lm, docs, cfg)
    timed_s, timed_tok = sum(seconds[args.warmup:]), sum(tokens[args.warmup:len(seconds)])
    n_params = sum(p.numel() for p in lm.hf.parameters())
    peak = matmul_peak(torch.float32 if args.precision == "fp32" else torch.bfloat16)
    peak32 = peak if args.precision == "fp32" else matmul_peak(torch.float32)
    tok_s = timed_tok / timed_s
    out = {"method": args.method, "precision": args.precision, "steps_timed": len(seconds) - args.warmup,
           "seconds_per_step": timed_s / (len(seconds) - args.warmup), "tokens_per_s": tok_s,
           "params": n_params, "achieved_gflops": 6 * n_params * tok_s / 1e9,
           "peak_gflops": peak, "peak_fp32_gflops": peak32,
           "mfu": 6 * n_params * tok_s / 1e9 / peak, "mfu_vs_fp32_peak": 6 * n_params * tok_s / 1e9 / peak32,
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
