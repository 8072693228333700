"""The fused output projection + loss gives the reference loss and gradients, and the model and
trainer use it without changing what training computes; the fused Adam steps like the plain one."""

from __future__ import annotations

import threading

import pytest
import torch
from torch import nn

from seq2seq.assemble import build_model
from seq2seq.modules import output
from seq2seq.modules.output import low_precision_output, projected_cross_entropy, sequence_loss
from seq2seq.recipe import ModelConfig


def _grads(*tensors: torch.Tensor) -> list[torch.Tensor]:
    out = [t.grad.clone() for t in tensors if t.grad is not None]
    for t in tensors:
        t.grad = None
    return out


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("chunk", [3, 4, 512])
def test_fused_equals_reference_in_value_and_gradients(smoothing: float, chunk: int) -> None:
    """Chunked (the last chunk full or partial, as the logits block is shared) or not, with
    padding and label smoothing: same loss, count and gradients."""
    features = torch.randn(3, 5, 4, requires_grad=True)
    generator = nn.Linear(4, 11)
    targets = torch.randint(1, 11, (3, 5))
    targets[1, 3:] = 0  # padding
    targets[2, 1:] = 0
    reference, count = sequence_loss(generator(features), targets, 0, smoothing)
    (reference * 0.5).backward()  # the gradient scale from above must be applied
    expected = _grads(features, generator.weight, generator.bias)
    fused, fused_count = projected_cross_entropy(features, generator, targets, 0, smoothing, chunk)
    (fused * 0.5).backward()
    got = _grads(features, generator.weight, generator.bias)
    assert int(count) == int(fused_count) == 9
    assert torch.allclose(fused, reference, atol=1e-5)
    assert len(got) == len(expected) == 3
    for g, e in zip(got, expected, strict=True):
        assert torch.allclose(g, e, atol=1e-6)


def test_fused_without_gradients_and_without_bias() -> None:
    """Under no_grad, and for a bias-free (tied) projection, the value is the reference's."""
    features = torch.randn(2, 4, 6)
    generator = nn.Linear(6, 9, bias=False)
    targets = torch.randint(1, 9, (2, 4))
    reference, _ = sequence_loss(generator(features), targets)
    with torch.no_grad():
        fused, _ = projected_cross_entropy(features, generator, targets)
    assert torch.allclose(fused, reference, atol=1e-5)
    features.requires_grad_(True)
    fused, _ = projected_cross_entropy(features, generator, targets, chunk=3)  # 3 + 3 + 2 rows
    fused.backward()
    got = _grads(features, generator.weight)
    sequence_loss(generator(features), targets)[0].backward()
    expected = _grads(features, generator.weight)
    assert len(got) == len(expected) == 2
    for g, e in zip(got, expected, strict=True):
        assert torch.allclose(g, e, atol=1e-6)


def test_fused_under_autocast() -> None:
    """bf16 autocast gives the bf16 products (close to float32, in a float32 loss); fp16
    autocast keeps float32 products, as its unscaled gradient would lose small probabilities."""
    features = torch.randn(2, 3, 8, requires_grad=True)
    generator = nn.Linear(8, 16)
    targets = torch.randint(1, 16, (2, 3))
    reference, _ = sequence_loss(generator(features), targets)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fused, _ = projected_cross_entropy(features.bfloat16(), generator, targets)
    assert fused.dtype == torch.float32
    assert torch.allclose(fused, reference, rtol=2e-2)
    low, _ = projected_cross_entropy(features, generator, targets, matmul_dtype=torch.bfloat16)
    assert torch.equal(fused, low)
    with torch.autocast("cpu", dtype=torch.float16):
        kept, _ = projected_cross_entropy(features, generator, targets)
    assert torch.equal(kept, projected_cross_entropy(features, generator, targets)[0])


def _relative_errors(got: list[torch.Tensor], expected: list[torch.Tensor]) -> list[float]:
    return [float((g - e).norm() / e.norm()) for g, e in zip(got, expected, strict=True)]


@pytest.mark.parametrize("low", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize(
    ("rows", "chunk", "smoothing", "bias"),
    [
        (150, 64, 0.0, True),  # chunks 64, 64, 22: the last one padded to 64 rows
        (150, 512, 0.1, True),  # one chunk of 150 padded to 192
        (130, 40, 0.1, False),  # chunks of 40 padded to 64, then 10 padded to 64
    ],
)
def test_low_precision_products_match_float32(
    low: torch.dtype, rows: int, chunk: int, smoothing: float, bias: bool
) -> None:
    """Products in bf16/fp16 (sums and softmax in float32) give the float32 loss and gradients
    to within their rounding, padded chunks included: padding rows whose x and gradient both
    held another chunk's values would reach the weight's gradient as errors of order one."""
    torch.manual_seed(0)
    features = (torch.randn(rows, 32) * 0.5).requires_grad_(True)
    generator = nn.Linear(32, 300, bias=bias)
    targets = torch.randint(1, 300, (rows,))
    reference, _ = sequence_loss(generator(features), targets, 0, smoothing)
    reference.backward()
    params = [features, generator.weight] + ([generator.bias] if bias else [])
    expected = _grads(*params)
    fused, count = projected_cross_entropy(
        features, generator, targets, 0, smoothing, chunk, matmul_dtype=low
    )
    fused.backward()
    got = _grads(*params)
    assert fused.dtype == torch.float32 and int(count) == rows
    assert abs(float((fused - reference).detach())) / float(reference.detach()) < 1e-3
    assert len(got) == len(expected) == (3 if bias else 2)
    tolerance = 1e-2 if low == torch.bfloat16 else 2e-3  # 8 against 11 bits of mantissa
    assert max(_relative_errors(got, expected)) < tolerance
    assert all(g.dtype == torch.float32 for g in got)


def test_low_precision_output_sets_the_products_for_its_block() -> None:
    """Inside the block the fused loss is the bf16 one, bit for bit; an explicit matmul_dtype
    wins over it and it over autocast; after an inner block the outer one holds again, and
    after the last, float32; another thread never sees it."""
    torch.manual_seed(0)
    features = torch.randn(70, 16, requires_grad=True)
    generator = nn.Linear(16, 50)
    targets = torch.randint(1, 50, (70,))

    def loss(**kwargs: object) -> float:
        return float(projected_cross_entropy(features, generator, targets, **kwargs)[0].detach())

    plain, bf16, fp16 = loss(), loss(matmul_dtype=torch.bfloat16), loss(matmul_dtype=torch.float16)
    assert len({plain, bf16, fp16}) == 3
    in_thread: list[float] = []
    with low_precision_output(torch.float16):
        with low_precision_output(torch.bfloat16):
            assert loss() == bf16
            assert loss(matmul_dtype=torch.float16) == fp16
            other = threading.Thread(target=lambda: in_thread.append(loss()))
            other.start()
            other.join()
        assert loss() == fp16
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert loss() == fp16
    assert loss() == plain
    assert in_thread == [plain]


def test_low_precision_buffers_are_padded_to_few_shapes() -> None:
    """Row counts round up to PAD_ROWS, so a new batch length rarely means a new product shape
    (each new shape costs oneDNN a kernel and glibc's heap a hole)."""
    assert [output._padded(n) for n in (1, 64, 65, 500, 512)] == [64, 64, 128, 512, 512]


def _config(copy: bool) -> ModelConfig:
    return ModelConfig(
        embedding_dim=8,
        embedding_dropout=0.0,
        encoder={"type": "gru", "hidden_size": 4},
        attention="bahdanau",
        decoder={"type": "luong", "hidden_size": 8, "dropout": 0.0, "input_feeding": False},
        copy=copy,
    )


@pytest.mark.parametrize("copy", [False, True])
def test_model_loss_equals_loss_of_its_scores(copy: bool) -> None:
    """run(targets=…) gives sequence_loss(forward(…)) and the same parameter gradients."""
    model = build_model(_config(copy), 20, 20)
    src = torch.tensor([[5, 6, 7, 3], [8, 3, 0, 0]])
    lengths = torch.tensor([4, 2])
    tgt_in = torch.tensor([[2, 9, 10], [2, 11, 0]])
    tgt_out = torch.tensor([[9, 10, 3], [11, 3, 0]])
    reference, _ = sequence_loss(model(src, lengths, tgt_in), tgt_out, label_smoothing=0.1)
    reference.backward()
    expected = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    output = model.run(src, lengths, tgt_in, targets=tgt_out, label_smoothing=0.1)
    assert output.loss is not None
    assert (output.scores is None) is not copy  # projected with the loss unless copying
    output.loss.backward()
    assert torch.allclose(output.loss, reference, atol=1e-5)
    got = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert got.keys() == expected.keys()
    for name, grad in got.items():
        assert torch.allclose(grad, expected[name], atol=1e-5), name


@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_adam_uses_the_fused_kernel_and_steps_like_the_plain_one(name: str) -> None:
    """The registry's Adam/AdamW are fused on the CPU (torch ≥ 2.4) and update as unfused."""
    from seq2seq import registry

    torch.manual_seed(0)
    plain_model, fused_model = nn.Linear(5, 3), nn.Linear(5, 3)
    fused_model.load_state_dict(plain_model.state_dict())
    fused = registry.build("optimizer", name, where="t", params=fused_model.parameters(), lr=0.1)
    plain_class = torch.optim.Adam if name == "adam" else torch.optim.AdamW
    plain = plain_class(
        plain_model.parameters(), lr=0.1, weight_decay=fused.defaults["weight_decay"]
    )
    assert fused.defaults["fused"] is True
    x = torch.randn(4, 5)
    for model, optimizer in ((plain_model, plain), (fused_model, fused)):
        for _ in range(3):
            optimizer.zero_grad()
            model(x).pow(2).sum().backward()
            optimizer.step()
    for a, b in zip(plain_model.parameters(), fused_model.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)
