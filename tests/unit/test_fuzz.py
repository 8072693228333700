"""Property-based fuzzing: recipes, overrides and input text never crash with anything but the
documented errors; sentencepiece gives back the text it can represent."""

from __future__ import annotations

import contextlib
import copy
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seq2seq.data.tokenizers import SentencePieceTokenizer
from seq2seq.errors import RecipeError
from seq2seq.recipe import apply_overrides, load_recipe, parse_recipe
from tests.conftest import tiny_recipe

EXAMPLES = int(os.environ.get("SEQ2SEQ_FUZZ_EXAMPLES", "150"))  # raise it for a longer soak
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))

# the words a recipe is made of, so that fuzzed recipes reach deep into the validator
KEYS = [
    "name", "seed", "data", "train", "valid", "source", "target", "tsv", "dataset", "model",
    "encoder", "attention", "decoder", "type", "hidden_size", "layers", "bidirectional",
    "dropout", "lr", "batch_tokens", "max_steps", "validation", "every", "select", "search",
    "beam_size", "max_length", "metrics", "tokenizer", "teacher_forcing", "schedule", "k",
    "coverage_loss", "copy", "early_stopping", "patience", "optimizer", "scheduler",
]  # fmt: skip
NAMES = ["gru", "lstm", "bahdanau", "luong", "beam", "greedy", "bleu", "adam", "sentencepiece"]
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(10**12), 10**12)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from(NAMES)
    | st.text(max_size=12)
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
BASE = tiny_recipe(Path("/nonexistent"))


def documented_outcome(data: Any) -> None:
    """Parsing gives a recipe or a RecipeError, never any other exception."""
    problems = None
    try:
        parse_recipe(data, "fuzz.yaml")
    except RecipeError as exc:
        problems = exc.problems
    assert problems is None or len(problems) > 0, "a RecipeError lists at least one problem"


def graft(recipe: dict[str, Any], path: list[str], value: Any) -> dict[str, Any]:
    """A copy of `recipe` with `value` put at `path`, creating mappings on the way."""
    recipe = copy.deepcopy(recipe)
    node: Any = recipe
    for key in path[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[path[-1]] = value
    return recipe


@FUZZ
@given(path=st.lists(st.sampled_from(KEYS), min_size=1, max_size=4), value=values)
def test_fuzzed_recipe_values(path: list[str], value: Any) -> None:
    """Any value at any (mostly real) key path of a valid recipe."""
    documented_outcome(graft(BASE, path, value))


@FUZZ
@given(data=values)
def test_fuzzed_whole_recipes(data: Any) -> None:
    """Anything YAML can hold as the whole recipe."""
    documented_outcome(data)


@FUZZ
@given(text=st.text(max_size=200))
def test_fuzzed_recipe_text(text: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Arbitrary text as a recipe file: a recipe or one RecipeError (YAML errors included)."""
    path = tmp_path_factory.mktemp("fuzz") / "recipe.yaml"
    path.write_text(text, encoding="utf-8")
    with contextlib.suppress(RecipeError):
        load_recipe(path)


dotted = st.lists(st.sampled_from(KEYS) | st.text(max_size=5), min_size=1, max_size=4).map(".".join)
override = st.tuples(dotted, st.sampled_from(["=", ":", "==", ""]), st.text(max_size=20)).map(
    "".join
)


@FUZZ
@given(overrides=st.lists(override, max_size=4))
def test_fuzzed_overrides(overrides: list[str]) -> None:
    """`KEY=VALUE` overrides of any shape: problems are reported, never raised otherwise."""
    data = copy.deepcopy(BASE)
    problems = apply_overrides(data, overrides)
    if not problems:
        documented_outcome(data)


@pytest.fixture(scope="module")
def loaded_run(trained: tuple[Path, Path]) -> Any:
    """The session's tiny trained run, loaded once."""
    from seq2seq.bundle import load_run

    return load_run(trained[0])


@FUZZ
@given(texts=st.lists(st.text(max_size=60), min_size=1, max_size=6))
def test_fuzzed_translate_input(texts: list[str], loaded_run: Any) -> None:
    """Any text: one translation per input, in order; blank inputs give blank outputs."""
    from seq2seq.inference import translate_batch
    from seq2seq.search.greedy import GreedySearch

    texts = [t.replace("\n", " ").replace("\r", " ") for t in texts]  # one line each
    results = translate_batch(loaded_run, GreedySearch(max_length=8), texts, batch_size=4)
    assert [r.source for r in results] == texts
    for text, result in zip(texts, results, strict=True):
        assert isinstance(result.text, str)
        if not text.strip():
            assert result.text == "" and result.hypotheses == []


ALPHABET = "abcdefghijklmnopqrstuvwxyzäöüßé0123456789.,?!'-"


@pytest.fixture(scope="module")
def sentencepiece() -> SentencePieceTokenizer:
    """A small model trained on text covering ALPHABET."""
    import random

    rng = random.Random(0)
    lines = [
        " ".join("".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 8))) for _ in range(9))
        for _ in range(400)
    ]
    tokenizer = SentencePieceTokenizer(vocab_size=120)
    tokenizer.fit(lines)
    return tokenizer


words = st.lists(st.text(alphabet=ALPHABET, min_size=1, max_size=10), min_size=1, max_size=12)


@FUZZ
@given(text=words.map(" ".join))
def test_sentencepiece_round_trip(text: str, sentencepiece: SentencePieceTokenizer) -> None:
    """Text the model covers (its characters, single spaces) comes back unchanged."""
    ids = sentencepiece.encode([text])
    assert 1 not in ids[0], "no <unk> for covered characters"
    assert sentencepiece.decode(ids) == [text]
