"""Named components by kind: registration, lookup, entry-point plugins, checked building."""

from __future__ import annotations

import importlib
import inspect
import os
import re
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any, TypeVar

from seq2seq.errors import PluginError, Problem, RecipeError
from seq2seq.schema import check_value, suggest

KINDS = (
    "encoder",
    "attention",
    "decoder",
    "search",
    "metric",
    "tokenizer",
    "optimizer",
    "scheduler",
)

# Arguments the builders pass at run time; a recipe must not set them.
PROVIDED: dict[str, dict[str, str]] = {
    "encoder": {"input_size": "the embedding size"},
    "attention": {"query_size": "the decoder", "key_size": "the encoder output size"},
    "decoder": {
        "input_size": "the embedding size",
        "memory_size": "the encoder output size",
        "make_attention": "the model builder, from model.attention",
    },
    "search": {},
    "metric": {},
    "tokenizer": {},
    "optimizer": {"params": "the trainer (model parameters)", "lr": "train.lr"},
    "scheduler": {"optimizer": "the trainer"},
}

BUILTIN_MODULES = (
    "seq2seq.modules.encoders",
    "seq2seq.modules.attention.additive",
    "seq2seq.modules.attention.multiplicative",
    "seq2seq.modules.attention.multihead",
    "seq2seq.modules.attention.local",
    "seq2seq.modules.attention.none",
    "seq2seq.modules.decoders",
    "seq2seq.search.greedy",
    "seq2seq.search.beam",
    "seq2seq.search.sample",
    "seq2seq.metrics.sacre",
    "seq2seq.metrics.rouge",
    "seq2seq.data.tokenizers",
    "seq2seq.training.optim",
)
BUILTIN = "built-in"
NO_PLUGINS_ENV = "SEQ2SEQ_NO_PLUGINS"
_NAME = re.compile(r"^[a-z][A-Za-z0-9_]*$")

F = TypeVar("F", bound=Callable[..., Any])
Spec = str | Mapping[str, Any]


@dataclass(frozen=True)
class Entry:
    """A registered component: its factory and where it came from."""

    kind: str
    name: str
    factory: Callable[..., Any]
    origin: str  # "built-in", "<distribution> <version>" or "module <name>"


_tables: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
_origin_stack: list[str] = []
_builtins_loaded = False


@contextmanager
def registering_as(origin: str) -> Iterator[None]:
    """Attribute registrations made inside the block to `origin`."""
    _origin_stack.append(origin)
    try:
        yield
    finally:
        _origin_stack.pop()


def _check_factory(kind: str, name: str, factory: Any, origin: str) -> None:
    if kind not in KINDS:
        raise PluginError(f"unknown component kind '{kind}' ({origin}); kinds: {', '.join(KINDS)}")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise PluginError(
            f"bad {kind} name {name!r} ({origin}): use a letter then letters, digits or '_'"
        )
    if not callable(factory):
        raise PluginError(f"{kind} '{name}' ({origin}) is not a class or function")
    for param in _parameters(factory):
        if param.kind is inspect.Parameter.VAR_KEYWORD:
            raise PluginError(
                f"{kind} '{name}' ({origin}) takes **{param.name}, which would swallow "
                "misspelled recipe keys; list its arguments explicitly"
            )


def _add(entry: Entry) -> None:
    table = _tables[entry.kind]
    old = table.get(entry.name)
    if old is not None and old.factory is not entry.factory:
        raise PluginError(
            f"{entry.kind} '{entry.name}' is registered twice: "
            f"by {old.origin} and by {entry.origin}"
        )
    table[entry.name] = entry


def register(kind: str, name: str) -> Callable[[F], F]:
    """Class or function decorator that registers a component under `kind`/`name`."""

    def decorate(factory: F) -> F:
        module = getattr(factory, "__module__", None)
        if module in BUILTIN_MODULES:  # however the built-in module got imported
            origin = BUILTIN
        else:
            origin = _origin_stack[-1] if _origin_stack else f"module {module or '?'}"
        _check_factory(kind, name, factory, origin)
        _add(Entry(kind, name, factory, origin))
        return factory

    return decorate


def load_builtins() -> None:
    """Import the built-in component modules once, so their decorators run."""
    global _builtins_loaded
    if _builtins_loaded:
        return
    _builtins_loaded = True
    with registering_as(BUILTIN):
        for module in BUILTIN_MODULES:
            importlib.import_module(module)


def import_modules(modules: Iterable[str]) -> None:
    """Import local modules (`--import`) whose `@register` decorators add components."""
    load_builtins()
    for module in modules:
        with registering_as(f"module {module}"):
            try:
                importlib.import_module(module)
            except PluginError:
                raise
            except ImportError as exc:
                raise PluginError(f"--import {module}: {exc}") from exc
            except Exception as exc:  # any other failure in the user's module, reported alike
                raise PluginError(f"--import {module}: {type(exc).__name__}: {exc}") from exc


# ---------------------------------------------------------------- entry-point plugins


def plugins_enabled() -> bool:
    """False when SEQ2SEQ_NO_PLUGINS is set to a true value."""
    return os.environ.get(NO_PLUGINS_ENV, "").strip().lower() not in ("1", "true", "yes", "on")


def _distribution(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "an unknown distribution"
    return f"{dist.metadata['Name']} {dist.version}"


def _plugin_entries(kind: str, scanned: Any = None) -> dict[str, list[EntryPoint]]:
    """Entry points of group seq2seq.<kind>, by name, read from metadata only (from `scanned`,
    one reading of every installed distribution's entry points, when given)."""
    if not plugins_enabled():
        return {}
    found: dict[str, list[EntryPoint]] = {}
    group = f"seq2seq.{kind}"
    for ep in entry_points(group=group) if scanned is None else scanned.select(group=group):
        found.setdefault(ep.name, []).append(ep)
    return found


def plugin_problems() -> list[str]:
    """Name clashes among plugins and with built-ins, found without importing plugin code."""
    load_builtins()
    problems = []
    # read once (each reading walks every distribution: 8 took 0.02–0.07 s of every command's
    # start); Python 3.11 returns SelectableGroups, 3.12 EntryPoints, both with .select
    scanned = entry_points() if plugins_enabled() else None
    for kind in KINDS:
        for name, eps in sorted(_plugin_entries(kind, scanned).items()):
            dists = sorted({_distribution(ep) for ep in eps})
            known = _tables[kind].get(name)
            if known is not None and known.origin == BUILTIN:
                problems.append(
                    f"{kind} '{name}' from {', '.join(dists)} clashes with the built-in "
                    f"{kind} '{name}'; the built-in is used"
                )
            elif len(dists) > 1:
                problems.append(
                    f"{kind} '{name}' is provided by several distributions: {' and '.join(dists)}"
                )
    return problems


def _load_plugin(kind: str, name: str, eps: list[EntryPoint]) -> Entry:
    dists = sorted({_distribution(ep) for ep in eps})
    if len(dists) > 1:
        raise PluginError(
            f"{kind} '{name}' is provided by several distributions: {' and '.join(dists)}; "
            "uninstall one of them"
        )
    ep = eps[0]
    origin = dists[0]
    try:
        with registering_as(origin):
            factory = ep.load()
    except Exception as exc:  # a plugin's import can fail in any way; report, never crash
        raise PluginError(
            f"{kind} '{name}' from {origin}\n  (entry point seq2seq.{kind}: {name} = {ep.value})\n"
            f"  failed to load: {type(exc).__name__}: {exc}"
        ) from exc
    _check_factory(kind, name, factory, origin)
    entry = Entry(kind, name, factory, origin)
    _add(entry)
    return entry


# ---------------------------------------------------------------- lookup


def names(kind: str) -> dict[str, str]:
    """Every known name of `kind` with its origin, sorted; plugins are not imported."""
    load_builtins()
    found = {name: entry.origin for name, entry in _tables[kind].items()}
    for name, eps in _plugin_entries(kind).items():
        found.setdefault(name, ", ".join(sorted({_distribution(ep) for ep in eps})))
    return dict(sorted(found.items()))


def available(kind: str) -> str:
    """Known names grouped by origin, for error messages."""
    by_origin: dict[str, list[str]] = {}
    for name, origin in names(kind).items():
        by_origin.setdefault(origin, []).append(name)
    return "; ".join(f"{', '.join(n)} ({origin})" for origin, n in by_origin.items()) or "none"


def get(kind: str, name: str) -> Entry:
    """The entry for `name`: built-in or registered first, then an entry-point plugin."""
    load_builtins()
    if kind not in KINDS:
        raise PluginError(f"unknown component kind '{kind}'; kinds: {', '.join(KINDS)}")
    entry = _tables[kind].get(name)
    if entry is not None:
        return entry
    eps = _plugin_entries(kind).get(name)
    if eps:
        return _load_plugin(kind, name, eps)
    raise PluginError(
        f"unknown {kind} '{name}'.{suggest(name, names(kind))}\n    available: {available(kind)}"
    )


def _parameters(factory: Callable[..., Any]) -> list[inspect.Parameter]:
    try:
        return list(inspect.signature(factory).parameters.values())
    except (TypeError, ValueError):
        return []


def arguments(factory: Callable[..., Any]) -> dict[str, tuple[Any, Any]]:
    """Keyword arguments of a factory: name → (annotation, default or inspect.Parameter.empty)."""
    target = factory.__init__ if inspect.isclass(factory) else factory
    try:
        hints = typing.get_type_hints(target, include_extras=True)
    except Exception:  # unresolvable forward references: skip type checks, keep names
        hints = {}
    result = {}
    for param in _parameters(factory):
        if param.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            continue
        result[param.name] = (hints.get(param.name, Any), param.default)
    return result


def split_spec(spec: Spec) -> tuple[str, dict[str, Any]]:
    """`"dot"` or `{"type": "dot", ...}` → (name, kwargs)."""
    if isinstance(spec, str):
        return spec, {}
    kwargs = dict(spec)
    return kwargs.pop("type"), kwargs


def _article(kind: str) -> str:
    return f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"


def check(kind: str, spec: Any, where: str) -> list[Problem]:
    """Every problem with a component spec: unknown type, unknown, missing or mistyped args."""
    if isinstance(spec, Mapping):
        if "type" not in spec:
            return [Problem(f"{where}.type", f"missing: name the {kind} ({available(kind)})")]
        if not isinstance(spec["type"], str):
            return [
                Problem(f"{where}.type", f"expected {_article(kind)} name, got {spec['type']!r}")
            ]
    elif not isinstance(spec, str):
        return [
            Problem(where, f"expected {_article(kind)} name or a mapping with 'type', got {spec!r}")
        ]
    name, kwargs = split_spec(spec)
    try:
        entry = get(kind, name)
    except PluginError as exc:
        return [Problem(f"{where}.type" if isinstance(spec, Mapping) else where, str(exc))]
    accepted = arguments(entry.factory)
    provided = PROVIDED[kind]
    problems = []
    for key, value in kwargs.items():
        path = f"{where}.{key}"
        if key in provided:
            problems.append(Problem(path, f"set by {provided[key]}; remove it from the recipe"))
        elif key not in accepted:
            settable = [a for a in accepted if a not in provided]
            problems.append(
                Problem(
                    path,
                    f"not an argument of {kind} '{name}'.{suggest(key, settable)}\n"
                    f"    accepts: {', '.join(settable) or 'no arguments'}",
                )
            )
        else:
            problems += check_value(value, accepted[key][0], path)
    for key, (_, default) in accepted.items():
        if default is inspect.Parameter.empty and key not in kwargs and key not in provided:
            problems.append(
                Problem(f"{where}.{key}", f"missing required argument of {kind} '{name}'")
            )
    return problems


def build(kind: str, spec: Spec, *, where: str, **provided: Any) -> Any:
    """Check a spec, then call its factory with the recipe's kwargs plus the provided ones."""
    problems = check(kind, spec, where)
    if problems:
        raise RecipeError("the recipe", problems)
    name, kwargs = split_spec(spec)
    factory = get(kind, name).factory
    accepted = arguments(factory)
    extra = {k: v for k, v in provided.items() if k in accepted}
    try:
        return factory(**kwargs, **extra)
    except ValueError as exc:  # components reject bad combinations of arguments this way
        raise RecipeError("the recipe", [Problem(where, str(exc))]) from exc


def snapshot() -> dict[str, dict[str, Entry]]:
    """A copy of the tables, for tests that register throwaway components."""
    load_builtins()
    return {kind: dict(table) for kind, table in _tables.items()}


def restore(saved: dict[str, dict[str, Entry]]) -> None:
    """Put back tables taken with `snapshot()`."""
    for kind, table in saved.items():
        _tables[kind] = dict(table)
