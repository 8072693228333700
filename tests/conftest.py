"""Shared fixtures: registry isolation, tiny data, a fake installed plugin, a trained tiny run,
a server on loopback."""

from __future__ import annotations

import random
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import invalidate_caches
from pathlib import Path
from typing import Any

import pytest
import torch

from seq2seq import registry


@pytest.fixture(autouse=True)
def _seed() -> None:
    random.seed(0)
    torch.manual_seed(0)


@pytest.fixture
def clean_registry() -> Iterator[None]:
    """Registrations made in the test are undone afterwards."""
    saved = registry.snapshot()
    yield
    registry.restore(saved)


@pytest.fixture
def fake_plugin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_registry: None
) -> Callable[..., Path]:
    """Install a fake distribution (a *.dist-info folder on sys.path) with entry points.

    Call it with (dist name, module source, {group: {name: "module:attr"}}).
    """

    def install(
        dist: str, module: str, source: str, groups: dict[str, dict[str, str]], version: str = "0.1"
    ) -> Path:
        root = tmp_path / f"site-{dist}"
        root.mkdir(exist_ok=True)
        (root / f"{module}.py").write_text(source, encoding="utf-8")
        info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n", encoding="utf-8"
        )
        lines = []
        for group, entries in groups.items():
            lines.append(f"[{group}]")
            lines += [f"{name} = {target}" for name, target in entries.items()]
        (info / "entry_points.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        monkeypatch.syspath_prepend(str(root))
        invalidate_caches()
        monkeypatch.delitem(sys.modules, module, raising=False)
        return root

    return install


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run the CLI in-process; return (exit code, stdout, stderr)."""
    from seq2seq.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(args)
    out, err = capsys.readouterr()
    return int(exit_info.value.code or 0), out, err


def tiny_model(vocab: int = 300, tie: bool = False) -> torch.nn.Module:
    """An untrained GRU encoder, Bahdanau attention and Luong decoder (20 source pieces,
    `vocab` target pieces, no dropout) in eval mode: for the decoding projection's tests."""
    from seq2seq.assemble import build_model
    from seq2seq.recipe import ModelConfig

    config = ModelConfig(
        embedding_dim=8,
        embedding_dropout=0.0,
        encoder={"type": "gru", "hidden_size": 4},  # type: ignore[arg-type]
        attention="bahdanau",
        decoder={"type": "luong", "hidden_size": 8, "dropout": 0.0},  # type: ignore[arg-type]
        tie_output=tie,
    )
    return build_model(config, 20, vocab).eval()


def write_pairs(directory: Path, name: str, pairs: list[tuple[str, str]]) -> tuple[Path, Path]:
    """Write line-aligned source/target files; return their paths."""
    src = directory / f"{name}.src"
    tgt = directory / f"{name}.tgt"
    src.write_text("".join(s + "\n" for s, _ in pairs), encoding="utf-8")
    tgt.write_text("".join(t + "\n" for _, t in pairs), encoding="utf-8")
    return src, tgt


def reversal_pairs(
    count: int, seed: int, min_len: int = 3, max_len: int = 8
) -> list[tuple[str, str]]:
    """Digit strings and their reversals, space-separated: the synthetic task."""
    rng = random.Random(seed)
    pairs = []
    for _ in range(count):
        digits = [str(rng.randrange(10)) for _ in range(rng.randint(min_len, max_len))]
        pairs.append((" ".join(digits), " ".join(reversed(digits))))
    return pairs


@pytest.fixture
def reversal_dir(tmp_path: Path) -> Path:
    """A folder with train/valid files of the digit-reversal task."""
    data = tmp_path / "data"
    data.mkdir()
    write_pairs(data, "train", reversal_pairs(3000, seed=1))
    write_pairs(data, "valid", reversal_pairs(100, seed=2))
    return data


def tiny_recipe(data: Path, **sections: dict) -> dict:
    """A recipe dict for the reversal task with tiny dims; `sections` update its parts."""
    recipe = {
        "name": "tiny",
        "seed": 3,
        "data": {
            "train": {"source": str(data / "train.src"), "target": str(data / "train.tgt")},
            "valid": {"source": str(data / "valid.src"), "target": str(data / "valid.tgt")},
            "tokenizer": "whitespace",
            "max_length": 20,
        },
        "model": {
            "embedding_dim": 16,
            "embedding_dropout": 0.0,
            "encoder": {"type": "gru", "hidden_size": 16},
            "attention": "bahdanau",
            "decoder": {"type": "luong", "hidden_size": 32, "dropout": 0.0},
        },
        "train": {
            "lr": 0.01,
            "batch_tokens": 400,
            "max_epochs": 1,
            "max_steps": 10,
            "validation": {"every": 5, "search": "greedy"},
            "log_every": 5,
        },
        "metrics": ["bleu"],
    }
    for key, value in sections.items():
        recipe[key] = {**recipe.get(key, {}), **value}
    return recipe


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A run dir trained for a few steps with a sentencepiece tokenizer; and its data dir.

    Shared by the whole session: tests must only read it."""
    import yaml

    from seq2seq.cli import main

    root = tmp_path_factory.mktemp("cli")
    data = root / "data"
    data.mkdir()
    write_pairs(data, "train", reversal_pairs(400, seed=1))
    write_pairs(data, "valid", reversal_pairs(20, seed=2))
    recipe = tiny_recipe(data, train={"max_steps": 6, "validation": {"every": 3, "select": "bleu"}})
    recipe["data"]["tokenizer"] = {"type": "sentencepiece", "vocab_size": 30}
    recipe["search"] = {"type": "greedy", "max_length": 12}
    path = root / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    with pytest.raises(SystemExit) as exit_info:
        main(["-q", "train", str(path), "--out", str(root / "run"), "train.lr=0.02"])
    assert exit_info.value.code == 0
    return root / "run", data


@pytest.fixture(scope="session")
def reversal_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run dir that has learned to reverse short digit strings, shared by the export and serve
    tests: 250 updates, about 8 s. At 150 updates the result hung on the thread count (48 or 22
    of the export test's 60 strings); at 250 every variant measured got all 60."""
    from seq2seq.recipe import parse_recipe
    from seq2seq.training.run import train

    root = tmp_path_factory.mktemp("reversal")
    write_pairs(root, "train", reversal_pairs(1500, seed=1, max_len=6))
    write_pairs(root, "valid", reversal_pairs(50, seed=2, max_len=6))
    recipe = tiny_recipe(
        root,
        model={
            "embedding_dim": 24,
            "encoder": {"type": "gru", "hidden_size": 24},
            "decoder": {"type": "luong", "hidden_size": 48, "dropout": 0.0, "input_feeding": False},
        },
        train={
            "lr": 0.01,
            "batch_tokens": 600,
            "max_epochs": 50,
            "max_steps": 250,
            "validation": {"every": 250, "select": "bleu"},
            "log_every": 1000,
        },
    )
    return train(parse_recipe(recipe), root / "run")


@contextmanager
def live_server(app: Any) -> Iterator[str]:
    """Run an ASGI app with uvicorn on a free loopback port in a thread; yield its base URL."""
    import uvicorn

    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
