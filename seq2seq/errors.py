"""Exceptions for problems a user can cause; the CLI turns each into one clear message."""

from __future__ import annotations

from dataclasses import dataclass


class Seq2SeqError(Exception):
    """Base of every error caused by user input (recipe, data, run dir, plugins)."""

    exit_code = 1


class InterruptedRun(Seq2SeqError):  # noqa: N818 - a stop, not an error
    """Training stopped on SIGINT or SIGTERM after saving a checkpoint."""

    exit_code = 130


class OutputClosed(Seq2SeqError):  # noqa: N818 - a stop, not an error
    """The reader of our output went away (e.g. `| head -1`)."""

    exit_code = 141  # 128 + SIGPIPE, what a shell reports for a writer killed by a closed pipe


@dataclass(frozen=True)
class Problem:
    """One problem found while validating, located by a dotted key path."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class RecipeError(Seq2SeqError):
    """A recipe (or its overrides) has one or more problems; all are reported together."""

    def __init__(self, source: str, problems: list[Problem]) -> None:
        self.source = source
        self.problems = problems
        count = len(problems)
        head = f"{source} has {count} problem{'s' if count != 1 else ''}"
        body = "\n".join("  " + str(p).replace("\n", "\n  ") for p in problems)
        super().__init__(f"{head}\n{body}")


class PluginError(Seq2SeqError):
    """A component could not be registered or a plugin failed to load."""


class DataError(Seq2SeqError):
    """Training or input data is missing, empty, misaligned or not valid UTF-8."""


class BundleError(Seq2SeqError):
    """A run dir is not a usable bundle, or a checkpoint cannot be read."""


class StorageError(Seq2SeqError):
    """A file of the run could not be written (disk full, permissions); nothing earlier is lost."""


class PlotError(Seq2SeqError):
    """A picture cannot be made: no run dir, no metrics, or its file cannot be written."""
