"""The example plugin in plugins/ installs with pip and works through its entry point for real."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import tiny_recipe

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = ROOT / "plugins" / "seq2seq-conv-encoder"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """pip-install the plugin into a fresh target folder; return an environment that sees it."""
    target = tmp_path_factory.mktemp("site")
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--no-deps",
        "--disable-pip-version-check",
        "--target",
        str(target),
        str(PLUGIN),
    ]
    try:
        import setuptools  # noqa: F401  (present: build here instead of fetching it)

        command.insert(4, "--no-build-isolation")
    except ImportError:
        pass
    subprocess.run(command, check=True, capture_output=True, text=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(target), str(ROOT)])
    return env


def run(
    args: list[str], env: dict[str, str], cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run seq2seq as a separate process."""
    return subprocess.run(
        [sys.executable, "-m", "seq2seq", *args], env=env, cwd=cwd, capture_output=True, text=True
    )


def test_listed_with_its_distribution(installed: dict[str, str]) -> None:
    """`seq2seq components encoder` names the plugin and its distribution."""
    result = run(["components", "encoder", "--load"], installed)
    assert result.returncode == 0, result.stderr
    assert "conv           [seq2seq-conv-encoder 0.1.0]" in result.stdout
    assert "kernel_size: int = 3" in result.stdout


def test_trains_a_recipe_naming_it(installed, reversal_dir, tmp_path) -> None:
    """A recipe with `encoder: {type: conv}` trains, and the run dir records the plugin."""
    recipe = tiny_recipe(reversal_dir, train={"max_steps": 3, "validation": {"every": 3}})
    recipe["model"]["encoder"] = {"type": "conv", "hidden_size": 16, "num_layers": 2}
    path = tmp_path / "conv.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    result = run(["-q", "train", str(path), "--out", str(tmp_path / "run")], installed)
    assert result.returncode == 0, result.stderr
    bundle = (tmp_path / "run" / "bundle.json").read_text(encoding="utf-8")
    assert '"origin": "seq2seq-conv-encoder 0.1.0"' in bundle
    translated = subprocess.run(
        [sys.executable, "-m", "seq2seq", "translate", str(tmp_path / "run")],
        input="1 2 3\n",
        env=installed,
        capture_output=True,
        text=True,
    )
    assert translated.returncode == 0, translated.stderr
    # without the plugin the run dir says which distribution is missing
    bare = dict(installed, PYTHONPATH=str(ROOT))
    missing = run(["translate", str(tmp_path / "run")], bare)
    assert missing.returncode == 1
    assert "needs encoder 'conv' (seq2seq-conv-encoder 0.1.0)" in missing.stderr


def test_plugin_own_tests_pass(installed: dict[str, str]) -> None:
    """The plugin package's test suite passes against this seq2seq."""
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(PLUGIN / "tests")],
        env=installed,
        capture_output=True,
        text=True,
        cwd=PLUGIN,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 passed" in result.stdout
