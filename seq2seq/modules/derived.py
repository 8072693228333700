"""Tensors that CPU decoding derives from a module's parameters (a contiguous Wᵀ, a per-token
table of gates), kept until a parameter they come from may have changed.

A derived tensor is made again when one of its sources was replaced (its storage moved), changed
in place (its version counter moved), or after any optimiser step, because fused Adam updates
weights without moving their version. Writing into `.data` in place is the one change it cannot
see. Entries are held weakly by module: they go with their module, and stay out of deepcopies and
pickles of the model.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from torch import Tensor, nn
from torch.optim.optimizer import register_optimizer_step_post_hook

Value = TypeVar("Value")


@dataclass(frozen=True)
class _Entry(Generic[Value]):
    """A derived value and what it was made from. Holding the sources keeps their storage from
    being reused, so an equal address means the same storage."""

    sources: tuple[Tensor, ...]
    versions: tuple[int, ...]
    optimizer_steps: int
    value: Value

    def made_from(self, sources: Sequence[Tensor]) -> bool:
        """Whether the sources are still those it was made from, unchanged."""
        return (
            len(sources) == len(self.sources)
            and self.optimizer_steps == _optimizer_steps.count
            and all(
                now.data_ptr() == then.data_ptr() and now._version == version
                for now, then, version in zip(sources, self.sources, self.versions, strict=True)
            )
        )


class DerivedCache(Generic[Value]):
    """One kind of derived value, one entry per module."""

    def __init__(self) -> None:
        self._entries: weakref.WeakKeyDictionary[nn.Module, _Entry[Value]] = (
            weakref.WeakKeyDictionary()
        )
        _caches.append(self)

    def get(self, module: nn.Module, sources: Sequence[Tensor], make: Callable[[], Value]) -> Value:
        """The module's value, made by `make` now if the sources changed since it was made."""
        entry = self._entries.get(module)
        if entry is None or not entry.made_from(sources):
            _optimizer_steps.watch()
            versions = tuple(source._version for source in sources)
            detached = tuple(source.detach() for source in sources)
            entry = _Entry(detached, versions, _optimizer_steps.count, make())
            self._entries[module] = entry
        return entry.value

    def peek(self, module: nn.Module) -> Value | None:
        """The module's value as it is held now, if any (whether or not still current)."""
        entry = self._entries.get(module)
        return None if entry is None else entry.value

    def forget(self, modules: Sequence[nn.Module]) -> None:
        """Drop these modules' entries."""
        for module in modules:
            self._entries.pop(module, None)

    def __len__(self) -> int:
        return len(self._entries)


_caches: list[DerivedCache[Any]] = []


def forget_derived(model: nn.Module) -> None:
    """Free every derived value of `model`'s modules: in training they go stale at each update."""
    held = [cache for cache in _caches if len(cache)]
    if not held:  # the usual case at every training update: no module walk
        return
    modules = list(model.modules())
    for cache in held:
        cache.forget(modules)


class _OptimizerSteps:
    """Counts the steps of every optimiser in this process, from the first value made."""

    def __init__(self) -> None:
        self.count = 0
        self.watching = False

    def watch(self) -> None:
        """Start counting (once)."""
        if not self.watching:
            register_optimizer_step_post_hook(self._counted)
            self.watching = True

    def _counted(self, *_: object) -> None:
        self.count += 1


_optimizer_steps = _OptimizerSteps()
