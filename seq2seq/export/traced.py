"""An exported model as the searches see it: `encode`/`step` over a traced TorchScript module.

Loading a TorchScript file runs the TorchScript code stored in it (not arbitrary Python, but
still code written by whoever made the file): load exports only from sources you trust. The file's
SHA-256 is checked against bundle.json first, which catches damage, not a forged bundle.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from seq2seq.errors import BundleError
from seq2seq.export.graphs import StateLayout, flatten, unflatten
from seq2seq.model import Specials
from seq2seq.modules.protocols import DecoderState

EXPORT_FORMAT = 1  # bump when an export written by this version cannot be read by the previous
RUNTIME = "torchscript"
GRAPH_FILE = "model.pt"


class TracedModel(nn.Module):
    """A traced FlatModel behind the Seq2Seq decoding interface (encode, step, specials)."""

    def __init__(self, graphs: torch.jit.ScriptModule, layout: StateLayout, specials: Specials):
        super().__init__()
        self.graphs = graphs
        self.layout = layout
        self.specials = specials

    def encode(self, src: Tensor, lengths: Tensor) -> DecoderState:
        """(B, S) source ids with (B,) lengths → the decoder's initial state."""
        return unflatten(tuple(self.graphs.encode(src, lengths)), self.layout, 0)

    def step(self, prev: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState]:
        """(B,) previous tokens → log-probabilities (B, V) of the next token, next state."""
        outputs = self.graphs.step(prev, *flatten(state, self.layout))
        following = unflatten(tuple(outputs[1:]), self.layout, state.position + 1, outputs=True)
        return outputs[0], following


def sha256(data: bytes) -> str:
    """Hex SHA-256 of `data`."""
    return hashlib.sha256(data).hexdigest()


def read_graph_file(export_dir: Path, section: dict[str, Any]) -> bytes:
    """The traced module's bytes, checked against the digest in bundle.json."""
    path = export_dir / str(section.get("file", GRAPH_FILE))
    if not path.is_file():
        raise BundleError(f"{path} is missing from the export dir")
    data = path.read_bytes()
    if sha256(data) != section.get("sha256"):
        raise BundleError(
            f"{path} does not match the SHA-256 recorded in bundle.json: the file is damaged or "
            "was replaced; export the run again"
        )
    return data


def _quantized_notice_once() -> None:
    """Show torch's once-per-process notice that quantized tensors are deprecated through Python
    (where the caller ignores it): loading an int8 module would print it on stderr from C++."""
    torch.quantize_per_tensor(torch.zeros(1), 1.0, 0, torch.qint8)


def load_traced(
    export_dir: Path, section: dict[str, Any], specials: Specials, device: str = "cpu"
) -> TracedModel:
    """The model of an export dir (its bundle.json "export" section), ready to decode."""
    try:
        version = int(section["format"])
        layout = StateLayout.from_dict(section["layout"])
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"{export_dir / 'bundle.json'}: damaged export section: {exc}") from exc
    if version > EXPORT_FORMAT or section.get("runtime") != RUNTIME:
        raise BundleError(
            f"{export_dir} is an export of format {version} ({section.get('runtime')}); this "
            f"seq2seq reads format {EXPORT_FORMAT} ({RUNTIME}): upgrade seq2seq"
        )
    data = read_graph_file(export_dir, section)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TorchScript's deprecation notice
            if section.get("quantize"):
                _quantized_notice_once()
            graphs = torch.jit.load(io.BytesIO(data), map_location=device)
    except RuntimeError as exc:
        raise BundleError(f"{export_dir / GRAPH_FILE} cannot be loaded: {exc}") from exc
    model = TracedModel(graphs, layout, specials)
    model.eval()
    return model
