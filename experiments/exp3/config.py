"""Experiment 3's run settings: :class:`Exp3Config` (model, data, orders, finetuning, seeds,
per-epoch evaluation) and its presets, the files in ``experiments/presets/exp3/``.

Example::

    cfg = preset("smoke")
    cfg.orders, cfg.seeds
"""

from __future__ import annotations

from dataclasses import dataclass, field

from experiments.core.config import ConfigMixin, load_preset
from experiments.exp3.data import Exp3DataConfig
from experiments.exp3.schema import ORDERS
from experiments.finetune import FinetuneConfig
from interp.models import ModelOptions


@dataclass(frozen=True)
class Exp3Config(ConfigMixin):
    """Args:
        model: base model spec.
        data: generator settings (the same pairs and held-out split for both orders).
        data_dir: a folder in the paper's layout (or ours) to use instead of generating; it
            holds one instruction order, so ``orders`` must name exactly that one.
        orders: which instruction orders to run.
        finetune: finetuning settings; its ``seed`` stays 0, the seeds are ``seeds``.
        seeds: finetuning seeds (the order of the training documents); each order is
            finetuned once per seed, on the same data.
        eval_every_epoch: ask the held-out and demonstrated questions after every epoch.
        stop_when_demonstrated: stop finetuning after the first epoch (from ``min_epochs``
            on) at which this share of the demonstrated questions is answered (0: never).
        min_epochs: see ``stop_when_demonstrated``.
        batch_size: evaluation batch size.
        extra_tokens: tokens generated beyond the instructed answer's length.
        n_realized_eval: demonstrated (trained) questions also asked, as a check that
            training took.
    """

    model: str = "smollm2-135m"
    model_options: ModelOptions = field(default_factory=ModelOptions)
    data: Exp3DataConfig = field(default_factory=Exp3DataConfig)
    data_dir: str | None = None
    orders: tuple[str, ...] = ORDERS
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    seeds: tuple[int, ...] = (0,)
    eval_every_epoch: bool = True
    stop_when_demonstrated: float = 0.0
    min_epochs: int = 1
    batch_size: int = 64
    extra_tokens: int = 6
    n_realized_eval: int = 100
    preset: str = "custom"

    def __post_init__(self) -> None:
        bad = [o for o in self.orders if o not in ORDERS]
        if bad or not self.orders or len(set(self.orders)) != len(self.orders):
            raise ValueError(f"Exp3Config.orders: distinct orders from {ORDERS}, got {list(self.orders)}")
        if self.data_dir and len(self.orders) != 1:
            raise ValueError("Exp3Config: a data_dir holds one instruction order; name it in orders "
                             "(rct exp3 --data FOLDER --order q2a|a2q)")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"Exp3Config.seeds: one or more distinct finetuning seeds, got {list(self.seeds)}")
        if self.finetune.seed != 0:
            raise ValueError("Exp3Config: set finetuning seeds with `seeds` (e.g. seeds=[0,1,2]); "
                             "finetune.seed stays 0")
        if not 0.0 <= self.stop_when_demonstrated <= 1.0:
            raise ValueError("Exp3Config.stop_when_demonstrated: a share between 0 and 1")
        if self.stop_when_demonstrated and not self.eval_every_epoch:
            raise ValueError("Exp3Config.stop_when_demonstrated needs eval_every_epoch")
        if self.min_epochs < 1 or self.n_realized_eval < 0 or self.extra_tokens < 1 or self.batch_size < 1:
            raise ValueError("Exp3Config: min_epochs, extra_tokens and batch_size must be >= 1, n_realized_eval >= 0")


def preset(name: str) -> Exp3Config:
    """The preset ``experiments/presets/exp3/<name>.yaml`` (a file a user can copy and edit)."""
    return load_preset(Exp3Config, "exp3", name)
