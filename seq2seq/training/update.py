"""One optimizer update: micro-batches through the model (wrapped in DistributedDataParallel in a
multi-process run) with gradient accumulation, mixed precision, clipping and the non-finite check.

The loss of an update is the summed token loss of every micro-batch on every rank divided by
the update's target tokens, so N processes × A micro-batches give the gradient of one process
taking the same N·A batches.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from seq2seq.data.batching import Batch
from seq2seq.errors import Seq2SeqError
from seq2seq.model import ModelOutput, Seq2Seq
from seq2seq.modules.low_products import low_precision_products
from seq2seq.modules.output import low_precision_output
from seq2seq.recipe import TrainConfig
from seq2seq.training.distributed import Group

# the precisions that lower products without autocast: the output layer's, or all large ones
LOW_PRODUCTS = ("bf16-output", "bf16-products")


@dataclass
class StepStats:
    """What one update reports (summed over ranks)."""

    loss: float  # mean per target token
    tokens: int  # real target tokens
    grad_norm: float  # global gradient norm before clipping
    finite: bool = True  # False: the update was skipped


class TeacherForced(nn.Module):
    """The training pass as a module's forward, so DistributedDataParallel can hook into it."""

    def __init__(self, model: Seq2Seq) -> None:
        super().__init__()
        self.model = model

    def forward(
        self,
        src: Tensor,
        lengths: Tensor,
        tgt_in: Tensor,
        ratio: float,
        coverage: bool,
        tgt_out: Tensor,
        smoothing: float,
    ) -> ModelOutput:
        """Seq2Seq.run with the targets: the summed token loss, computed together with the
        output projection (modules/output.py)."""
        return self.model.run(
            src, lengths, tgt_in, ratio, coverage, targets=tgt_out, label_smoothing=smoothing
        )


def autocast_dtype(name: str, device: torch.device) -> torch.dtype | None:
    """train.precision → the autocast dtype (None: no autocast)."""
    if name in ("fp32", *LOW_PRODUCTS) or (name == "auto" and device.type != "cuda"):
        return None
    if name == "fp16":
        return torch.float16
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        if name == "bf16":
            raise Seq2SeqError("train.precision: bf16 is not supported by this GPU; use fp16")
        return torch.float16
    return torch.bfloat16


def output_dtype(name: str, device: torch.device) -> torch.dtype | None:
    """train.precision → the dtype of the fused output layer's products (bf16-output and
    bf16-products), else None."""
    if name not in LOW_PRODUCTS:
        return None
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise Seq2SeqError(f"train.precision: this GPU has no bf16 for {name}; use fp32")
    return torch.bfloat16


def products_dtype(name: str, device: torch.device) -> torch.dtype | None:
    """train.precision → the dtype of the other products over whole sequences (bf16-products:
    `modules/low_products.py`), else None."""
    return output_dtype(name, device) if name == "bf16-products" else None


@contextlib.contextmanager
def precision_scope(
    device_type: str,
    autocast: torch.dtype | None,
    output: torch.dtype | None,
    products: torch.dtype | None = None,
) -> Iterator[None]:
    """Where a forward pass runs: under `autocast`, with the output layer's products in
    `output` and the other products over whole sequences in `products` (each None: off), as
    `autocast_dtype`, `output_dtype` and `products_dtype` chose."""
    with contextlib.ExitStack() as scopes:
        scopes.enter_context(
            torch.autocast(device_type, dtype=autocast, enabled=autocast is not None)
        )
        if output is not None:
            scopes.enter_context(low_precision_output(output))
        if products is not None:
            scopes.enter_context(low_precision_products(products))
        yield


def teacher_ratio(cfg: TrainConfig, step: int) -> float:
    """The teacher-forcing ratio at `step`."""
    forcing = cfg.teacher_forcing
    return forcing if isinstance(forcing, float) else forcing.ratio(step)


class Updater:
    """Runs updates for one model and optimizer, alone or as one rank of a DDP job."""

    def __init__(
        self,
        model: Seq2Seq,
        optimizer: torch.optim.Optimizer,
        schedule: object,
        cfg: TrainConfig,
        group: Group,
    ) -> None:
        self.model, self.optimizer, self.schedule, self.cfg = model, optimizer, schedule, cfg
        self.group = group
        self.net: nn.Module = TeacherForced(model)
        if group.active:
            self.net = nn.parallel.DistributedDataParallel(
                self.net,
                device_ids=[group.device.index] if group.device.type == "cuda" else None,
                # every built-in component passes the contract check "gradients reach every
                # parameter", so the extra graph traversal of find_unused_parameters is not needed
                find_unused_parameters=False,
            )
        self.dtype = autocast_dtype(cfg.precision, group.device)
        self.output_dtype = output_dtype(cfg.precision, group.device)
        self.products_dtype = products_dtype(cfg.precision, group.device)
        # fp16 gradients underflow without loss scaling; bf16 has float32's range
        self.scaler = torch.amp.GradScaler(group.device.type, enabled=self.dtype == torch.float16)

    def update(self, micro: list[tuple[Batch, float]], tokens: int, step: int) -> StepStats:
        """Accumulate gradients over this rank's micro-batches, then clip and step."""
        self.net.train()
        self.optimizer.zero_grad(set_to_none=True)
        per_token = max(tokens, 1) / self.group.world  # DDP averages gradients over ranks
        local = 0.0
        for index, (batch, weight) in enumerate(micro):
            last = index == len(micro) - 1
            no_sync = getattr(self.net, "no_sync", None)  # only the last backward communicates
            quiet = no_sync() if no_sync is not None and not last else contextlib.nullcontext()
            with quiet:
                total = self._summed_loss(batch, step)
                self.scaler.scale(total * weight / per_token).backward()
            local += float(total.detach()) * weight
        loss = self.group.sum([local])[0] / max(tokens, 1)
        if self.scaler.is_enabled():
            self.scaler.unscale_(self.optimizer)
        limit = self.cfg.clip_grad_norm if self.cfg.clip_grad_norm is not None else math.inf
        norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), limit))
        # the loss is summed over ranks and the norm taken after DDP's all-reduce, so every rank
        # reaches the same decision; with a scaler, an overflowing gradient is its business
        finite = math.isfinite(loss) and (math.isfinite(norm) or self.scaler.is_enabled())
        if finite:
            self.scaler.step(self.optimizer)  # a plain optimizer.step() when disabled
            self.schedule.after_update()  # type: ignore[attr-defined]
        if self.scaler.is_enabled():
            self.scaler.update()
        return StepStats(loss, tokens, norm, finite)

    def _summed_loss(self, batch: Batch, step: int) -> Tensor:
        """Token loss of one batch, summed (plus the coverage loss when it is on)."""
        cfg = self.cfg
        assert batch.tgt_in is not None and batch.tgt_out is not None
        coverage = cfg.coverage_loss
        use_coverage = coverage is not None and step >= coverage.start_step
        device = self.group.device.type
        with precision_scope(device, self.dtype, self.output_dtype, self.products_dtype):
            output = self.net(
                batch.src,
                batch.src_lengths,
                batch.tgt_in,
                teacher_ratio(cfg, step),
                use_coverage,
                batch.tgt_out,
                cfg.label_smoothing,
            )
        assert output.loss is not None
        total = output.loss
        if use_coverage and output.coverage_loss is not None:
            assert coverage is not None
            real = (batch.tgt_out != self.model.specials.pad).to(output.coverage_loss.dtype)
            total = total + coverage.weight * (output.coverage_loss * real).sum()
        return total
