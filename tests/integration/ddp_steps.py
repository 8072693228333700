"""A torchrun worker for the tests: train a few updates and record, after every one, whether
the parameters are identical on every rank, and rank 0's parameters.

Usage: torchrun --nproc-per-node N tests/integration/ddp_steps.py RECIPE.yaml OUT.json STEPS
"""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

import torch

from seq2seq.recipe import load_recipe
from seq2seq.training import distributed
from seq2seq.training.feed import updates
from seq2seq.training.prepare import prepare
from seq2seq.training.run import seed_everything
from seq2seq.training.trainer import Trainer


def main(recipe_path: str, out_path: str, steps: int) -> None:
    """Train `steps` updates; rank 0 writes one record per update."""
    recipe = load_recipe(recipe_path)
    group = distributed.join(torch.device("cpu"), 2.0)
    seed_everything(recipe.seed)
    data = prepare(recipe, None, group)
    trainer = Trainer(recipe, Path(out_path).parent, group.device, data, group)
    per_update = group.world * recipe.train.accumulate
    records = []
    for batches in itertools.islice(updates(data.feed.epoch(0, 0), per_update), steps):
        stats = trainer.train_step(batches)
        trainer.state.step += 1
        flat = torch.cat([p.detach().flatten() for p in trainer.model.parameters()])
        every = group.gather(flat)
        spread = max(float((other - every[0]).abs().max()) for other in every)
        records.append({"spread": spread, "loss": stats.loss, "params": flat.tolist()})
    if group.main:
        Path(out_path).write_text(json.dumps(records), encoding="utf-8")
    distributed.leave(group)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
