"""A finished experiment 1 run, loaded for work in Python: ``load_run(path)``.

One call gives the finetuned model, the base model it started from, the dataset and the four
query sets (:mod:`analysis.query_sets`: the trained and the reverse direction in both prompt
forms, each query with its ``fact_id``, template and entity). From it, one more call compares
forward and reverse queries (attribution by layer and MLP, the MLPs' value and key sides) and
returns a tidy table, one row per query set and model.

Example::

    from experiments.exp1.load_run import load_run
    run = load_run("runs/exp1-cpu")              # a folder made by `rct exp1` or `rct init` ...
    run.sets["p2d_reverse"].queries[0]             # Query(prompt, target, entities, meta)
    rows = run.forward_vs_reverse(n_facts=20)      # [{"set", "direction", "model", ...}, ...]
    print(run.forward_vs_reverse_markdown())       # the same table in Markdown

Every error names the run folder and what is missing (no finetuned model yet, no dataset).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from experiments.core.rundir import RunDir
from interp.errors import RctError


@dataclass
class LoadedRun:
    """What :func:`load_run` returns.

    Args:
        path: the run folder.
        config: its ``config.json`` (a dict).
        tuned, base: the finetuned model (``RUN/model``) and the base model named in the config
            (:class:`interp.loaded.LoadedModel`); ``base`` is None with ``base=False``.
        dataset: the run's :class:`experiments.exp1.schema.Exp1Dataset`.
        sets: query set name -> :class:`analysis.query_sets.QuerySet` (one held-out prompt per
            fact, every fact; ``query_sets(run.dataset, ...)`` for other sizes).
    """

    path: Path
    config: dict[str, Any]
    tuned: Any
    base: Any
    dataset: Any
    sets: dict[str, Any] = field(default_factory=dict)
    last_direction: dict[str, Any] | None = None

    def models(self) -> dict[str, Any]:
        """``{"base": ..., "finetuned": ...}`` (the base only when loaded)."""
        return {**({"base": self.base} if self.base is not None else {}), "finetuned": self.tuned}

    def forward_vs_reverse(self, n_facts: int = 20, top_k: int = 20, n_perm: int = 2000,
                           progress: bool = False) -> list[dict[str, Any]]:
        """Forward against reverse in the base and the finetuned model
        (:func:`analysis.direction.direction_comparison`): one row per set and model with the
        answer-minus-foil logit, the attention and MLP writes at the last token, the MLPs' write
        at the entity and the key response (the forward fact's neurons at the reverse query's
        entity; on trained sets, their positive control), each a mean over facts with its 95%
        t interval. ``self.last_direction`` keeps the full result."""
        from analysis.direction import DirectionConfig, direction_comparison, summary_rows

        if n_facts < 3:
            raise RctError(f"forward_vs_reverse: n_facts must be >= 3 (intervals and z-scores over facts), got {n_facts}")
        cfg = DirectionConfig(n_facts=n_facts, top_k=top_k, n_perm=n_perm)
        self.last_direction = direction_comparison(self.models(), self.dataset, cfg, progress)
        return summary_rows(self.last_direction)

    def forward_vs_reverse_markdown(self) -> str:
        """The table of the last :meth:`forward_vs_reverse` call in Markdown, with its caption."""
        from analysis.direction import summary_markdown

        if getattr(self, "last_direction", None) is None:
            raise RctError("forward_vs_reverse_markdown: call run.forward_vs_reverse() first")
        return summary_markdown(self.last_direction)


def load_run(path: str | Path, device: str = "cpu", base: bool = True, dtype: str | None = None) -> LoadedRun:
    """Load the finished experiment 1 run in ``path`` (see the module docstring).

    Args:
        device: where the models go (``cpu``, ``cuda``...).
        base: also load the base model (needed for every base-vs-finetuned comparison).
        dtype: the models' dtype (default: the run's ``model_options.dtype``).
    """
    from analysis.query_sets import query_sets
    from experiments.exp1.data import load_exp1
    from interp.models import load_model

    path = Path(path)
    run = RunDir.existing(path, "exp1")
    cfg = run.config_dict()
    if not (path / "model" / "config.json").is_file():
        raise RctError(f"{path} has no finetuned model yet (no {path / 'model'}): finish the run first "
                       f"(rct finetune {path})")
    data = Path(cfg["data_dir"]) if cfg.get("data_dir") else path / "data"
    if not data.is_dir():
        raise RctError(f"{path}: its dataset {data} is missing (rct generate {path} writes it)")
    ds = load_exp1(data)
    opts = {"device": device}
    dt = dtype or (cfg.get("model_options") or {}).get("dtype")
    if dt:
        opts["dtype"] = dt
    tuned = load_model(str(path / "model"), **opts)
    base_lm = load_model(cfg["model"], **opts) if base else None
    return LoadedRun(path, cfg, tuned, base_lm, ds, query_sets(ds, n_facts=None, prompts_per_fact=1))
