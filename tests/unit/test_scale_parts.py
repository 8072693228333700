"""The parts of distributed training that need no second process: sharding, precision, the
launcher's command line and failure messages."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import seq2seq.model
from seq2seq.errors import RecipeError, Seq2SeqError
from seq2seq.modules import gru, low_products, output
from seq2seq.recipe import parse_recipe
from seq2seq.training.checkpoint import checkpoint_dir, load_trainer_state
from seq2seq.training.distributed import Group, inject_fault, is_peer_failure
from seq2seq.training.feed import share, updates
from seq2seq.training.launch import describe_failure, without_nproc
from seq2seq.training.run import train
from seq2seq.training.update import autocast_dtype, output_dtype, products_dtype
from tests.conftest import tiny_recipe


@pytest.mark.parametrize(("count", "world"), [(4, 2), (3, 2), (1, 2), (5, 1), (7, 3)])
def test_shares_are_disjoint_and_cover_the_update(count: int, world: int) -> None:
    """Every batch of an update goes to exactly one rank; all ranks run as many micro-steps."""
    group = [f"b{i}" for i in range(count)]
    shares = [share(group, rank, world) for rank in range(world)]
    real = [b for s in shares for b, w in s if w == 1.0]
    assert sorted(real) == sorted(group)
    assert len({len(s) for s in shares}) == 1
    assert all(w in (0.0, 1.0) for s in shares for _, w in s)


def test_updates_group_the_global_order() -> None:
    """Updates take consecutive batches; the epoch's last one may be short."""
    assert list(updates(iter(range(7)), 3)) == [[0, 1, 2], [3, 4, 5], [6]]


def test_precision_choice() -> None:
    """auto is float32 on the CPU; bf16 and fp16 are honoured (fp16 brings a scaler)."""
    cpu = torch.device("cpu")
    assert autocast_dtype("auto", cpu) is None
    assert autocast_dtype("fp32", cpu) is None
    assert autocast_dtype("bf16", cpu) is torch.bfloat16
    assert autocast_dtype("fp16", cpu) is torch.float16
    assert autocast_dtype("bf16-output", cpu) is None  # no autocast: the output layer alone
    assert output_dtype("bf16-output", cpu) is torch.bfloat16
    assert all(output_dtype(name, cpu) is None for name in ("auto", "fp32", "bf16", "fp16"))
    assert autocast_dtype("bf16-products", cpu) is None  # nor here: the large products alone
    assert output_dtype("bf16-products", cpu) is products_dtype("bf16-products", cpu)
    assert products_dtype("bf16-products", cpu) is torch.bfloat16
    others = ("auto", "fp32", "bf16", "fp16", "bf16-output")
    assert all(products_dtype(name, cpu) is None for name in others)


def test_fp16_keeps_the_scaler_in_checkpoints(reversal_dir: Path, tmp_path: Path) -> None:
    """Training in fp16 saves the gradient scaler's state, and resuming restores it."""
    recipe = tiny_recipe(reversal_dir, train={"precision": "fp16", "max_steps": 2})
    train(parse_recipe(recipe), tmp_path / "run", device="cpu")
    saved = load_trainer_state(checkpoint_dir(tmp_path / "run", "latest"))  # type: ignore[arg-type]
    assert saved["scaler"]["scale"] > 0
    train(None, tmp_path / "run", resume=True, overrides=("train.max_steps=3",), device="cpu")
    resumed = load_trainer_state(checkpoint_dir(tmp_path / "run", "latest"))  # type: ignore[arg-type]
    assert resumed["loop"]["step"] == 3 and "scaler" in resumed


def test_bf16_trains_on_the_cpu(reversal_dir: Path, tmp_path: Path) -> None:
    """bf16 autocast runs and needs no scaler."""
    recipe = tiny_recipe(reversal_dir, train={"precision": "bf16", "max_steps": 2})
    train(parse_recipe(recipe), tmp_path / "run", device="cpu")
    saved = load_trainer_state(checkpoint_dir(tmp_path / "run", "latest"))  # type: ignore[arg-type]
    assert "scaler" not in saved and saved["loop"]["step"] == 2


@pytest.mark.parametrize(
    ("precision", "low"),
    [("bf16-output", torch.bfloat16), ("bf16-products", torch.bfloat16), ("fp32", None)],
)
def test_bf16_output_reaches_the_fused_loss(
    reversal_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    precision: str,
    low: torch.dtype | None,
) -> None:
    """Under bf16-output (and bf16-products) every training loss multiplies in bf16 and the
    model runs without autocast; under fp32, in float32."""
    seen: list[tuple[object, bool]] = []
    fused_loss, apply = seq2seq.model.projected_cross_entropy, output._ProjectedCrossEntropy.apply

    def watched_loss(*args: object, **kwargs: object) -> tuple[torch.Tensor, torch.Tensor]:
        seen.append(("autocast", torch.is_autocast_enabled("cpu")))
        return fused_loss(*args, **kwargs)

    def watched_apply(*args: object) -> torch.Tensor:
        seen.append(("products", args[-1]))
        return apply(*args)

    monkeypatch.setattr(seq2seq.model, "projected_cross_entropy", watched_loss)
    monkeypatch.setattr(output._ProjectedCrossEntropy, "apply", watched_apply)
    recipe = tiny_recipe(reversal_dir, train={"precision": precision, "max_steps": 2})
    train(parse_recipe(recipe), tmp_path / "run", device="cpu")
    assert len(seen) >= 4 and set(seen) == {("autocast", False), ("products", low)}


@pytest.mark.parametrize(("precision", "low"), [("bf16-products", torch.bfloat16), ("fp32", None)])
def test_bf16_products_reach_the_gru_and_the_linear_layers(
    reversal_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    precision: str,
    low: torch.dtype | None,
) -> None:
    """Under bf16-products the encoder's and decoder's GRU layers (the decoder without input
    feeding runs as one), the attention's projections and the combine layer multiply in bf16
    while training; under fp32 none does. Validation's decoding never does."""
    layers: list[object] = []
    linears: list[bool] = []  # grad mode at each linear call
    low_calls: list[tuple[object, bool]] = []  # (dtype, grad mode) at each bf16 product
    apply_layer, run_linear = gru._GRULayer.apply, low_products.linear
    apply_low = low_products._LowLinear.apply

    def watched_layer(*args: object) -> object:
        layers.append(args[-1])
        return apply_layer(*args)

    def watched_linear(layer: torch.nn.Module, values: torch.Tensor) -> torch.Tensor:
        linears.append(torch.is_grad_enabled())
        return run_linear(layer, values)

    def watched_low(*args: object) -> object:
        low_calls.append((args[-1], torch.is_grad_enabled()))
        return apply_low(*args)

    monkeypatch.setattr(gru._GRULayer, "apply", watched_layer)
    monkeypatch.setattr(low_products, "linear", watched_linear)
    monkeypatch.setattr(low_products._LowLinear, "apply", watched_low)
    train_keys = {"precision": precision, "max_steps": 2}
    decoder = {"type": "luong", "hidden_size": 32, "dropout": 0.0, "input_feeding": False}
    recipe = tiny_recipe(reversal_dir, train=train_keys, model={"decoder": decoder})
    train(parse_recipe(recipe), tmp_path / "run", device="cpu")
    assert len(layers) >= 4 and set(layers) == {low}  # 2 updates × encoder and decoder
    assert True in linears and False in linears  # training and validation both came here
    training_calls = linears.count(True)  # key, query and combine: 3 per update
    assert low_calls == ([(low, True)] * training_calls if low is not None else [])


def test_bf16_output_needs_bf16_on_a_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """A GPU without bf16 is told so, with the way out."""
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    with pytest.raises(Seq2SeqError, match="no bf16 for bf16-output; use fp32"):
        output_dtype("bf16-output", torch.device("cuda"))


def test_new_keys_are_validated(reversal_dir: Path) -> None:
    """accumulate must be positive; streaming and the cache exclude each other."""
    recipe = tiny_recipe(reversal_dir, train={"accumulate": 0})
    recipe["data"].update(streaming=True, cache_dir="x")
    with pytest.raises(RecipeError) as caught:
        parse_recipe(recipe)
    assert "train.accumulate: must be positive, got 0" in str(caught.value)
    assert "data.cache_dir: streaming reads the data as it goes" in str(caught.value)


def test_workers_run_the_command_without_nproc() -> None:
    """`--nproc N` and `--nproc=N` are removed; everything else is kept in order."""
    argv = ["--debug", "train", "--nproc", "2", "r.yaml", "--out", "d", "--nproc=3", "a.b=1"]
    assert without_nproc(argv) == ["--debug", "train", "r.yaml", "--out", "d", "a.b=1"]


def test_failure_messages_name_rank_and_error() -> None:
    """The error a worker recorded, or how it ended when it recorded none."""
    recorded = SimpleNamespace(
        message={"message": "Seq2SeqError: data.train: file x not found"},
        exitcode=1,
        local_rank=1,
    )
    assert describe_failure(3, recorded) == (
        "rank 3 (local rank 1) exited with code 1: data.train: file x not found"
    )
    killed = SimpleNamespace(
        message="Signal 9 (SIGKILL) received by PID 5",
        exitcode=-9,
        local_rank=0,
        signal_name=lambda: "SIGKILL",
    )
    assert (
        describe_failure(0, killed)
        == "rank 0 (local rank 0) was killed by SIGKILL: see its output above"
    )


def test_fault_injection_and_peer_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    """SEQ2SEQ_FAULT fails the named rank at the named step only; lost peers are recognised."""
    monkeypatch.setenv("SEQ2SEQ_FAULT", "0:2")
    inject_fault(Group(), 1)
    inject_fault(Group(rank=1, world=2), 2)
    with pytest.raises(RuntimeError, match="fault injected"):
        inject_fault(Group(), 2)
    assert is_peer_failure(RuntimeError("[pair.cc:553] Connection closed by peer [127.0.0.1]"))
    assert not is_peer_failure(RuntimeError("shape mismatch"))
    assert Group().gather(5) == [5] and Group().sum([1.0]) == [1.0] and Group().any(True) == [True]
