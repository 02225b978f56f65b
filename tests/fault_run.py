"""Run ``rct`` with a hard exit after N optimizer steps, as a kill -9 would stop it.

    python tests/fault_run.py N exp1 --preset smoke --out RUN
    accelerate launch --num_processes 2 --cpu tests/fault_run.py N finetune RUN

The fault goes in through :func:`experiments.finetune.finetune`'s ``on_step`` callback; the
training loop itself knows nothing of tests.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.exp1 import run as exp1_run  # noqa: E402
from experiments import finetune as ft  # noqa: E402
from experiments.cli import main  # noqa: E402

AFTER = int(sys.argv[1])


def _die(state: dict) -> None:
    if state["step"] >= AFTER:
        sys.stdout.flush()
        os._exit(137)


def _finetune_with_fault(*args, **kwargs):
    return ft.finetune(*args, on_step=_die, **kwargs)


exp1_run.finetune = _finetune_with_fault

if __name__ == "__main__":
    sys.exit(main(sys.argv[2:]))
