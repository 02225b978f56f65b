"""What experiment 1 calls of the mitigations: its one door into reverse training.

:mod:`experiments.exp1.run` imports this module only. It gets the reversed training copies
of ``data.reverse_training`` (finetune stage), the evaluation in the reversed language
(evaluate stage) and its saved metrics (report stage).

This module imports the reverse-training modules inside its functions, never at import
time: those modules import :mod:`experiments.exp1` modules, whose package imports
:mod:`experiments.exp1.run`, which imports this module. So this module loads on its own,
whichever of the two packages is imported first.

Example::

    docs += reversed_copies(cfg.data, dataset, run_dir / "reversed_train.jsonl")
    evaluate_reversed_language(lm, dataset, cfg.eval, cfg.data.reverse_training, run_dir / "eval" / "finetuned")
    load_reversed_metrics(run_dir / "eval" / "finetuned")
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from experiments.exp1.data import Exp1DataConfig, Exp1Dataset
    from experiments.exp1.evaluate import EvalConfig
    from interp.models import LoadedModel
    from interp.tokens import Document

__all__ = ["evaluate_reversed_language", "load_reversed_metrics", "reversed_copies"]


def reversed_copies(cfg: Exp1DataConfig, dataset: Exp1Dataset, path: Path) -> list[Document]:
    """The reversed training copies of ``cfg.reverse_training`` (none for ``none``), their
    records written to ``path``: :func:`experiments.mitigations.reverse.reversed_copies`."""
    from experiments.mitigations.reverse import reversed_copies as copies

    return copies(cfg, dataset, path)


def evaluate_reversed_language(lm: LoadedModel, dataset: Exp1Dataset, cfg: EvalConfig, reverse_training: str,
                               out_dir: Path, progress: bool = True) -> dict[str, Any] | None:
    """The evaluated cells asked in the reversed language, when the run asks for it
    (:func:`experiments.mitigations.reverse_eval.query_mode` of ``cfg.reversed_queries`` and the
    run's ``data.reverse_training``): writes ``reversed_records.jsonl`` and
    ``reversed_metrics.json`` into ``out_dir`` and returns the metrics; None (nothing written)
    when the mode is ``none``."""
    from experiments.mitigations.reverse_eval import evaluate_reversed, query_mode

    mode = query_mode(cfg.reversed_queries, reverse_training)
    if mode == "none":
        return None
    return evaluate_reversed(lm, dataset, cfg, mode, out_dir, progress=progress)


def load_reversed_metrics(out_dir: Path) -> dict[str, Any] | None:
    """``reversed_metrics.json`` of one evaluated model, None when it has none
    (:func:`experiments.mitigations.reverse_eval.load_reversed_metrics`)."""
    from experiments.mitigations.reverse_eval import load_reversed_metrics as load

    return load(out_dir)
