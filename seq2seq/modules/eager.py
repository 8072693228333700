"""When this package's hand-written CPU kernels may run in place of PyTorch's own modules."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import torch
from torch import Tensor, nn


def compiling() -> bool:
    """True inside torch.compile (torch.compiler.is_compiling exists from torch 2.3)."""
    is_compiling = getattr(torch.compiler, "is_compiling", None)
    return bool(is_compiling()) if is_compiling is not None else False


def autocast_on_cpu() -> bool:
    """True under CPU autocast."""
    return active_autocast_dtype("cpu") is not None


def active_autocast_dtype(device_type: str) -> torch.dtype | None:
    """The dtype autocast gives products on this device type, or None when it is off."""
    try:
        if not torch.is_autocast_enabled(device_type):
            return None
        return torch.get_autocast_dtype(device_type)
    except (TypeError, AttributeError):  # torch < 2.4: the per-device queries
        if device_type == "cpu":
            on, dtype = torch.is_autocast_cpu_enabled(), torch.get_autocast_cpu_dtype()
        else:
            on, dtype = torch.is_autocast_enabled(), torch.get_autocast_gpu_dtype()
        return dtype if on else None


def eager_cpu(tensor: Tensor) -> bool:
    """True for a CPU tensor in plain eager mode: not tracing, scripting or compiling.

    Those record a graph, which must not bake in a hand-written kernel's Python loop count.
    """
    return (
        tensor.device.type == "cpu"
        and not torch.jit.is_tracing()
        and not torch.jit.is_scripting()
        and not compiling()
    )


def hooked(module: nn.Module) -> bool:
    """Whether calling the module would run hooks (its own or global), which a hand-written
    path standing in for its forward would skip."""
    from torch.nn.modules import module as module_globals

    return bool(
        module._forward_hooks
        or module._forward_pre_hooks
        or module_globals._global_forward_hooks
        or module_globals._global_forward_pre_hooks
    )


@contextlib.contextmanager
def dtype_scope(store: threading.local, dtype: torch.dtype) -> Iterator[None]:
    """`store.dtype` is `dtype` within the block (in this thread), and what it was after."""
    outer = getattr(store, "dtype", None)
    store.dtype = dtype
    try:
        yield
    finally:
        store.dtype = outer
