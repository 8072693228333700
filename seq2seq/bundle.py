"""The run dir as a self-contained bundle: recipe, tokenizers, component origins, checkpoints."""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from seq2seq import BUNDLE_FORMAT, __version__, registry
from seq2seq.assemble import build_model
from seq2seq.errors import BundleError, PluginError, RecipeError, Seq2SeqError
from seq2seq.model import Seq2Seq, Specials
from seq2seq.recipe import Recipe, dump_recipe, parse_recipe
from seq2seq.training.checkpoint import atomic_write, checkpoint_dir, load_weights

BUNDLE_FILE = "bundle.json"
TOKENIZER_DIR = "tokenizer"


def component_origins(recipe: Recipe) -> dict[str, dict[str, str]]:
    """Which distribution provided each component the recipe names."""
    specs: dict[str, Any] = {
        "encoder": recipe.model.encoder,
        "attention": recipe.model.attention,
        "decoder": recipe.model.decoder,
        "tokenizer": recipe.data.tokenizer,
        "search": recipe.search,
    }
    origins = {}
    for kind, spec in specs.items():
        if spec is None:
            continue
        name = registry.split_spec(spec)[0]
        origins[kind] = {"name": name, "origin": registry.get(kind, name).origin}
    return origins


def write_bundle(
    run_dir: Path, recipe: Recipe, tokenizers: dict[str, Any], extra: dict[str, Any] | None = None
) -> None:
    """Write recipe, tokenizer files and bundle.json (last, so its presence means complete);
    `extra` adds keys to bundle.json (an export's "export" section)."""
    (run_dir / TOKENIZER_DIR).mkdir(parents=True, exist_ok=True)
    files = {}
    for side, tokenizer in tokenizers.items():
        name = "joint" if tokenizers["source"] is tokenizers["target"] else side
        path = run_dir / TOKENIZER_DIR / f"{name}.bin"
        if not path.exists():
            atomic_write(path, tokenizer.to_bytes())
        files[side] = f"{TOKENIZER_DIR}/{name}.bin"
    atomic_write(run_dir / "recipe.yaml", dump_recipe(recipe).encode("utf-8"))
    meta = {
        "format": BUNDLE_FORMAT,
        "seq2seq_version": __version__,
        "torch_version": torch.__version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "recipe": recipe.to_dict(),
        "tokenizer_files": files,
        "vocab_sizes": {side: tok.vocab_size for side, tok in tokenizers.items()},
        "components": component_origins(recipe),
        **(extra or {}),
    }
    atomic_write(run_dir / BUNDLE_FILE, json.dumps(meta, indent=2, ensure_ascii=False).encode())


def read_bundle_meta(run_dir: Path) -> dict[str, Any]:
    """bundle.json, checked for presence and format version."""
    path = run_dir / BUNDLE_FILE
    if not run_dir.is_dir():
        raise BundleError(f"{run_dir} is not a directory; pass the --out dir of `seq2seq train`")
    if not path.is_file():
        raise BundleError(
            f"{run_dir} is not a seq2seq run dir: {BUNDLE_FILE} is missing "
            "(pass the --out dir of `seq2seq train`)"
        )
    try:
        meta = json.loads(path.read_text("utf-8"))
        version = int(meta["format"])
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path} is damaged: {exc}") from exc
    if version > BUNDLE_FORMAT:
        raise BundleError(
            f"{path} has bundle format {version}, newer than this seq2seq {__version__} reads "
            f"({BUNDLE_FORMAT}); upgrade seq2seq (it was written by {meta.get('seq2seq_version')})"
        )
    return meta


def _check_components(meta: dict[str, Any]) -> None:
    for kind, info in meta.get("components", {}).items():
        try:
            registry.get(kind, info["name"])
        except PluginError as exc:
            raise BundleError(
                f"this model needs {kind} '{info['name']}' ({info['origin']}), which is not "
                f"available here: {str(exc).splitlines()[0]}"
            ) from exc


def load_tokenizers(run_dir: Path, meta: dict[str, Any], recipe: Recipe) -> dict[str, Any]:
    """The source and target tokenizers stored in the bundle (one object when joint)."""
    loaded: dict[str, Any] = {}
    by_file: dict[str, Any] = {}
    for side in ("source", "target"):
        relative = meta["tokenizer_files"][side]
        if relative not in by_file:
            path = run_dir / relative
            if not path.is_file():
                raise BundleError(f"tokenizer file {path} is missing from the run dir")
            tokenizer = registry.build("tokenizer", recipe.data.tokenizer, where="data.tokenizer")
            try:
                tokenizer.load_bytes(path.read_bytes())
            except Seq2SeqError as exc:
                raise BundleError(f"tokenizer file {path}: {exc}") from exc
            by_file[relative] = tokenizer
        loaded[side] = by_file[relative]
    return loaded


@dataclass
class Loaded:
    """A model ready to decode, with what it needs around it."""

    recipe: Recipe
    model: Seq2Seq
    tokenizers: dict[str, Any]
    checkpoint: Path
    meta: dict[str, Any]


def load_run(run_dir: str | Path, which: str = "best", device: str = "cpu") -> Loaded:
    """Load a run dir's recipe, tokenizers and best (or latest) weights, checking every file.

    An export dir loads too: its traced model decodes through the same encode/step interface.
    """
    run_dir = Path(run_dir)
    meta = read_bundle_meta(run_dir)
    _check_components(meta)
    try:
        recipe = parse_recipe(meta["recipe"], f"{run_dir / BUNDLE_FILE} (recipe)")
    except RecipeError as exc:
        raise BundleError(f"the recipe stored in the run dir no longer validates:\n{exc}") from exc
    tokenizers = load_tokenizers(run_dir, meta, recipe)
    if "export" in meta:  # an export dir (`seq2seq export`): a traced model, no checkpoints
        from seq2seq.export.traced import load_traced

        traced = load_traced(run_dir, meta["export"], Specials(), device)
        return Loaded(recipe, traced, tokenizers, run_dir, meta)  # type: ignore[arg-type]
    directory = checkpoint_dir(run_dir, which)
    if directory is None:
        raise BundleError(f"{run_dir} has no checkpoint yet; train longer or wait for a validation")
    sizes = tokenizers["source"].vocab_size, tokenizers["target"].vocab_size
    model = build_model(recipe.model, *sizes, Specials(), init_parameters=False)
    load_weights(model, directory / "model.safetensors")  # every parameter, or an error
    model.to(device).eval()
    return Loaded(recipe, model, tokenizers, directory, meta)
