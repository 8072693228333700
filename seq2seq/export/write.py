"""`seq2seq export`: trace a run's model (optionally int8), check it, and write an export dir.

TorchScript tracing is used because torch.export (torch 2.13) cannot export packed sequences
(pytorch issue 171978) and TorchScript runs dynamic-int8 RNNs. A trace records one run of the
code, so anything that depends on Python values (the step number for local-m attention) would be
frozen: every export is checked against the eager model on batches of other shapes over several
steps and refused when they differ.
"""

from __future__ import annotations

import copy
import io
import logging
import math
import os
import shutil
import warnings
from pathlib import Path
from typing import Literal, cast

import torch
from torch import nn

from seq2seq.bundle import Loaded, load_run, write_bundle
from seq2seq.errors import BundleError, StorageError
from seq2seq.export.graphs import FlatModel, StateLayout, example_batch, layout_of
from seq2seq.export.traced import EXPORT_FORMAT, GRAPH_FILE, RUNTIME, TracedModel, sha256
from seq2seq.model import Seq2Seq
from seq2seq.modules.protocols import DecoderState
from seq2seq.training.checkpoint import atomic_write, fsync_dir

log = logging.getLogger(__name__)

Quantize = Literal["int8"]
TOLERANCE = 1e-3  # largest |Δ log-probability| allowed between the traced and the eager model
VERIFY_LENGTHS = ([9, 1, 6, 3], [4])  # batch sizes and lengths unlike the trace example's
VERIFY_STEPS = 6


def quantize_int8(model: Seq2Seq) -> Seq2Seq:
    """A copy with dynamic int8 GRU, LSTM and Linear layers (weights int8, activations float)."""
    quantize_dynamic = getattr(torch.ao.quantization, "quantize_dynamic", None)
    if quantize_dynamic is None:
        raise BundleError(
            f"--quantize int8 needs torch.ao.quantization.quantize_dynamic, which torch "
            f"{torch.__version__} no longer has; export without --quantize"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecated in favour of torchao, which has no int8 RNN
        quantized = quantize_dynamic(
            copy.deepcopy(model), {nn.Linear, nn.GRU, nn.LSTM}, dtype=torch.qint8
        )
    return cast(Seq2Seq, quantized)


def trace(model: Seq2Seq, vocab_size: int) -> tuple[torch.jit.ScriptModule, StateLayout]:
    """Trace the model's encode and step into one TorchScript module."""
    src, lengths = example_batch(vocab_size, [7, 5, 2])
    bos = torch.full((src.size(0),), model.specials.bos, dtype=torch.long)
    with torch.no_grad():
        encoded = model.encode(src, lengths)
        _, after = model.step(bos, encoded)
        layout = layout_of(encoded, after)
        flat = FlatModel(model, layout)
        try:
            start = flat.encode(src, lengths)
        except ValueError as exc:
            raise BundleError(f"this model cannot be exported: {exc}") from exc
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings: `verify` checks the result
            graphs = torch.jit.trace_module(
                flat, {"encode": (src, lengths), "step": (bos, *start)}, check_trace=False
            )
    return graphs, layout


def verify(eager: Seq2Seq, traced: TracedModel, vocab_size: int) -> float:
    """Largest |Δ log-probability| (or attention weight) between the models over several steps
    of unseen batches."""
    generator = torch.Generator().manual_seed(7)
    worst = 0.0
    with torch.no_grad():
        for lengths in VERIFY_LENGTHS:
            src, lens = example_batch(vocab_size, lengths)
            ours, theirs = eager.encode(src, lens), traced.encode(src, lens)
            prev = torch.full((len(lengths),), traced.specials.bos, dtype=torch.long)
            for _ in range(VERIFY_STEPS):
                expected, ours = eager.step(prev, ours)
                got, theirs = traced.step(prev, theirs)
                worst = max(worst, float((expected - got).abs().max()), _shown(ours, theirs))
                prev = torch.randint(4, vocab_size, prev.shape, generator=generator)
    return worst


def _shown(eager: DecoderState, traced: DecoderState) -> float:
    """Largest difference of the attention weights the displays show (inf when one is missing)."""
    worst = 0.0
    for expected, got in (
        (eager.weights, traced.weights),
        (eager.head_weights, traced.head_weights),
    ):
        if (expected is None) != (got is None):
            return math.inf
        if expected is not None and got is not None:
            worst = max(worst, float((expected - got).abs().max()))
    return worst


def export_model(loaded: Loaded, quantize: Quantize | None) -> tuple[bytes, StateLayout, float]:
    """The traced module's bytes, its state layout and the verified difference."""
    model = loaded.model.cpu().eval()
    if quantize == "int8":
        model = quantize_int8(model)
    vocab = min(tok.vocab_size for tok in loaded.tokenizers.values())
    graphs, layout = trace(model, vocab)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(graphs, buffer)
    data = buffer.getvalue()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reloaded = torch.jit.load(io.BytesIO(data))
    difference = verify(model, TracedModel(reloaded, layout, loaded.model.specials), vocab)
    if not difference <= TOLERANCE:
        raise BundleError(
            f"the traced model does not reproduce this model (log-probabilities differ by "
            f"{difference:.3g}): a part of it depends on Python values a trace cannot carry, "
            "such as the step number read by `local` attention with mode m"
        )
    return data, layout, difference


def export_run(
    run_dir: str | Path, out: str | Path, quantize: Quantize | None = None, which: str = "best"
) -> Path:
    """Export a run dir's best (or latest) model to `out`; return `out`."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BundleError(f"{out} already exists; choose a new --out for the export")
    loaded = load_run(run_dir, which)
    if "export" in loaded.meta:
        raise BundleError(f"{run_dir} is already an export; export from the training run dir")
    data, layout, difference = export_model(loaded, quantize)
    log.info("traced model verified: largest log-probability difference %.2g", difference)
    section = {
        "format": EXPORT_FORMAT,
        "runtime": RUNTIME,
        "quantize": quantize,
        "file": GRAPH_FILE,
        "sha256": sha256(data),
        "layout": layout.to_dict(),
        "verified_max_difference": difference,
        "source": {"run_dir": str(Path(run_dir).resolve()), "checkpoint": loaded.checkpoint.name},
    }
    try:
        _write_dir(out, data, loaded, section)
    except OSError as exc:  # a full disk, a file in the way, no permission
        raise StorageError(f"cannot write the export to {out}: {exc.strerror or exc}") from exc
    return out


def _write_dir(out: Path, data: bytes, loaded: Loaded, section: dict[str, object]) -> None:
    """Write the export under a temporary name and rename it to `out` when complete."""
    tmp = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        atomic_write(tmp / GRAPH_FILE, data)
        write_bundle(tmp, loaded.recipe, loaded.tokenizers, {"export": section})
        if out.exists():
            out.rmdir()  # empty, checked above
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_dir(out.parent)
