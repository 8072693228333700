"""Tests for seq2seq.recipe: YAML loading, overrides, validation messages, cross-checks, dumps."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import yaml

from seq2seq.errors import RecipeError
from seq2seq.recipe import (
    Corpus,
    EarlyStopping,
    Recipe,
    dump_recipe,
    load_recipe,
    parse_recipe,
)
from tests.conftest import tiny_recipe


def write(tmp_path: Path, data: Any, name: str = "r.yaml") -> Path:
    """Write `data` (YAML text or plain data) to a recipe file."""
    path = tmp_path / name
    text = data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False)
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(error: pytest.ExceptionInfo[RecipeError]) -> list[str]:
    return [str(p) for p in error.value.problems]


def load_error(path: Path, overrides: tuple[str, ...] = ()) -> pytest.ExceptionInfo[RecipeError]:
    with pytest.raises(RecipeError) as info:
        load_recipe(path, overrides)
    return info


@pytest.fixture
def recipe_data(tmp_path: Path) -> dict[str, Any]:
    return tiny_recipe(tmp_path)


# ---------------------------------------------------------------- reading the file


def test_load_valid_recipe(tmp_path: Path, recipe_data: dict[str, Any]) -> None:
    recipe = load_recipe(write(tmp_path, recipe_data))
    assert isinstance(recipe, Recipe)
    assert recipe.name == "tiny"
    assert recipe.data.train == Corpus(
        source=str(tmp_path / "train.src"), target=str(tmp_path / "train.tgt")
    )
    assert recipe.model.encoder == {"type": "gru", "hidden_size": 16}
    assert recipe.train.validation.every == 5
    assert recipe.train.optimizer == "adam"  # defaults fill the rest
    assert recipe.train.early_stopping is None


def test_load_accepts_str_path(tmp_path: Path, recipe_data: dict[str, Any]) -> None:
    assert load_recipe(str(write(tmp_path, recipe_data))).seed == 3


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    info = load_error(path)
    assert str(info.value) == f"{path} has 1 problem\n  file not found"
    assert info.value.source == str(path)


def test_directory_is_not_a_recipe_file(tmp_path: Path) -> None:
    assert "file not found" in str(load_error(tmp_path).value)


def test_non_utf8_bytes(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"name: caf\xe9\n")
    info = load_error(path)
    assert problems_of(info) == ["not UTF-8 text (byte 9)"]
    assert str(path) in str(info.value)


def test_lone_surrogates_are_problems(tmp_path: Path, recipe_data: dict[str, Any]) -> None:
    """YAML's "\\ud800" escape (in the file or an override) makes a string no UTF-8 file can
    hold; it is named like any other problem. Training used to fail with an internal error
    after it had started writing the run dir."""
    text = yaml.safe_dump(recipe_data, sort_keys=False) + 'metrics: [bleu, "x\\udfff"]\n'
    info = load_error(write(tmp_path, text), ('name="\\ud800"',))
    assert problems_of(info) == [
        "name: not valid Unicode: a lone surrogate (U+D800)",
        "metrics[1]: not valid Unicode: a lone surrogate (U+DFFF)",
    ]


def test_invalid_yaml_names_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "name: x\nseed: 1\nmodel: a: b\n")
    [message] = problems_of(load_error(path))
    assert message == "invalid YAML: line 3, column 9: mapping values are not allowed here"


def test_invalid_yaml_unclosed_bracket(tmp_path: Path) -> None:
    path = write(tmp_path, "name: x\nmetrics: [bleu\nseed: 2\n")
    [message] = problems_of(load_error(path))
    assert message.startswith("invalid YAML: line 3, column ")


@pytest.mark.parametrize(
    ("text", "kind"), [("- a\n- b\n", "a list"), ("just text\n", "a str"), ("", "empty")]
)
def test_recipe_must_be_a_mapping(tmp_path: Path, text: str, kind: str) -> None:
    info = load_error(write(tmp_path, text))
    assert problems_of(info) == [f"a recipe is a YAML mapping, this is {kind}"]


def test_parse_recipe_rejects_non_mapping_with_source() -> None:
    with pytest.raises(RecipeError) as info:
        parse_recipe([1, 2], source="inline")
    assert str(info.value) == "inline has 1 problem\n  a recipe is a YAML mapping, this is a list"


# ---------------------------------------------------------------- keys and types


def test_unknown_top_level_key_suggests(tmp_path: Path, recipe_data: dict[str, Any]) -> None:
    recipe_data["modle"] = recipe_data.pop("model")
    [message] = problems_of(load_error(write(tmp_path, recipe_data)))
    assert message == (
        "modle: unknown key. Did you mean 'model'?\n"
        "    accepted: data, name, seed, model, train, search, metrics"
    )


def test_unknown_section_key_suggests(tmp_path: Path, recipe_data: dict[str, Any]) -> None:
    recipe_data["train"]["lrr"] = 0.1
    recipe_data["train"]["validation"]["evry"] = 3
    messages = problems_of(load_error(write(tmp_path, recipe_data)))
    assert len(messages) == 2
    assert messages[0].startswith("train.lrr: unknown key. Did you mean 'lr'?")
    assert messages[1].startswith("train.validation.evry: unknown key. Did you mean 'every'?")
    assert "accepted: every, select, subset, search, batch_size" in messages[1]


def test_missing_required_train_corpus(tmp_path: Path, recipe_data: dict[str, Any]) -> None:
    del recipe_data["data"]["train"]
    assert problems_of(load_error(write(tmp_path, recipe_data))) == [
        "data.train: missing required key (mapping)"
    ]


def test_missing_data_section(tmp_path: Path) -> None:
    assert problems_of(load_error(write(tmp_path, {"name": "x"}))) == [
        "data: missing required key (mapping)"
    ]


@pytest.mark.parametrize(
    ("section", "key", "value", "expected"),
    [
        (None, "seed", "abc", "seed: expected int, got 'abc'"),
        (None, "name", 5, "name: expected str, got 5"),
        ("train", "lr", "fast", "train.lr: expected float, got 'fast'"),
        ("train", "max_epochs", 2.5, "train.max_epochs: expected int, got 2.5"),
        ("train", "max_steps", "ten", "train.max_steps: expected int, got 'ten'"),
        ("model", "tie_output", "maybe", "model.tie_output: expected bool, got 'maybe'"),
        ("model", "embedding_dim", True, "model.embedding_dim: expected int, got True"),
        ("data", "train", "train.txt", "data.train: expected mapping, got 'train.txt'"),
    ],
)
def test_wrong_types(
    tmp_path: Path,
    recipe_data: dict[str, Any],
    section: str | None,
    key: str,
    value: Any,
    expected: str,
) -> None:
    (recipe_data if section is None else recipe_data[section])[key] = value
    assert problems_of(load_error(write(tmp_path, recipe_data))) == [expected]


def test_metrics_must_be_a_list(tmp_path: Path, recipe_data: dict[str, Any]) -> None:
    recipe_data["metrics"] = "bleu"
    [message] = problems_of(load_error(write(tmp_path, recipe_data)))
    assert message.startswith("metrics: expected list of ")


def test_component_problems_use_recipe_paths(tmp_path: Path, recipe_data: dict[str, Any]) -> None:
    recipe_data["model"]["attention"] = {"type": "bahdanu"}
    recipe_data["metrics"] = ["bleu", "bleuu"]
    messages = problems_of(load_error(write(tmp_path, recipe_data)))
    assert len(messages) == 2
    assert messages[0].startswith("model.attention.type: unknown attention 'bahdanu'.")
    assert "Did you mean 'bahdanau'?" in messages[0]
    assert messages[1].startswith("metrics[1]: unknown metric 'bleuu'. Did you mean 'bleu'?")


def test_many_problems_reported_together(tmp_path: Path, recipe_data: dict[str, Any]) -> None:
    recipe_data["seed"] = "x"
    recipe_data["train"]["lrr"] = 0.1
    recipe_data["model"]["encoder"]["hidden_sise"] = 8
    recipe_data["model"]["attention"] = {"type": "bahdanau", "key_size": 16}
    recipe_data["data"]["max_length"] = "long"
    path = write(tmp_path, recipe_data)
    info = load_error(path)
    assert len(info.value.problems) == 5
    text = str(info.value)
    assert text.startswith(f"{path} has 5 problems\n")
    expected = [
        "seed: expected int, got 'x'",
        "data.max_length: expected int, got 'long'",
        "model.encoder.hidden_sise: not an argument of encoder 'gru'. Did you mean 'hidden_size'?",
        "model.attention.key_size: set by the encoder output size; remove it from the recipe",
        "train.lrr: unknown key. Did you mean 'lr'?",
    ]
    messages = problems_of(info)
    for line in expected:
        assert any(m.startswith(line) for m in messages), line
        assert "  " + line in text


# ---------------------------------------------------------------- overrides


def test_override_float(tmp_path: Path, recipe_data: dict[str, Any]) -> None:
    recipe = load_recipe(write(tmp_path, recipe_data), ["train.lr=0.0005"])
    assert recipe.train.lr == 0.0005


def test_overrides_are_parsed_as_yaml(tmp_path: Path, recipe_data: dict[str, Any]) -> None:
    overrides = ["train.max_steps=null", "model.tie_output=true", "name=run 2", "seed=7"]
    recipe = load_recipe(write(tmp_path, recipe_data), overrides)
    assert recipe.train.max_steps is None
    assert recipe.model.tie_output is True
    assert recipe.name == "run 2"
    assert recipe.seed == 7


def test_override_component_type_in_mapping_keeps_arguments(
    tmp_path: Path, recipe_data: dict[str, Any]
) -> None:
    recipe = load_recipe(write(tmp_path, recipe_data), ["model.encoder.type=lstm"])
    assert recipe.model.encoder == {"type": "lstm", "hidden_size": 16}


def test_override_component_type_of_bare_name(tmp_path: Path, recipe_data: dict[str, Any]) -> None:
    recipe_data["model"]["encoder"] = "gru"
    recipe = load_recipe(write(tmp_path, recipe_data), ["model.encoder.type=lstm"])
    assert recipe.model.encoder == {"type": "lstm"}


def test_override_argument_of_bare_component_name(
    tmp_path: Path, recipe_data: dict[str, Any]
) -> None:
    overrides = ["model.attention.hidden_size=8", "train.validation.search.max_length=30"]
    recipe = load_recipe(write(tmp_path, recipe_data), overrides)
    assert recipe.model.attention == {"type": "bahdanau", "hidden_size": 8}
    assert recipe.train.validation.search == {"type": "greedy", "max_length": 30}


def test_override_creates_missing_sections(tmp_path: Path, recipe_data: dict[str, Any]) -> None:
    overrides = ["model.encoder.type=lstm", "train.early_stopping.patience=2"]
    del recipe_data["model"]["encoder"]
    recipe = load_recipe(write(tmp_path, recipe_data), overrides)
    assert recipe.model.encoder == {"type": "lstm"}
    assert recipe.train.early_stopping == EarlyStopping(patience=2)


def test_override_values_are_validated(tmp_path: Path, recipe_data: dict[str, Any]) -> None:
    info = load_error(write(tmp_path, recipe_data), ("train.lr=fast", "model.encoder.type=lstmm"))
    messages = problems_of(info)
    assert messages[0].startswith("model.encoder.type: unknown encoder 'lstmm'.")
    assert messages[1] == "train.lr: expected float, got 'fast'"


@pytest.mark.parametrize("override", ["train.lr", "=3", "train..lr=3", ".lr=3", "lr.=1"])
def test_malformed_override(tmp_path: Path, recipe_data: dict[str, Any], override: str) -> None:
    info = load_error(write(tmp_path, recipe_data), (override,))
    assert problems_of(info) == [f"{override}: an override looks like key.path=value"]


def test_override_value_not_yaml(tmp_path: Path, recipe_data: dict[str, Any]) -> None:
    info = load_error(write(tmp_path, recipe_data), ("name=[a",))
    assert problems_of(info) == ["name: value '[a' is not valid YAML"]


def test_override_into_a_number_or_list(tmp_path: Path, recipe_data: dict[str, Any]) -> None:
    info = load_error(write(tmp_path, recipe_data), ("seed.value=1", "metrics.first=bleu"))
    assert problems_of(info) == [
        "seed.value: seed is 3, not a section",
        "metrics.first: metrics is ['bleu'], not a section",
    ]


def test_override_deep_into_a_non_section(tmp_path: Path, recipe_data: dict[str, Any]) -> None:
    info = load_error(write(tmp_path, recipe_data), ("train.lr.x.y=1",))
    assert problems_of(info) == ["train.lr.x.y: train.lr is 0.01, not a section"]


def test_override_into_a_plain_string_is_not_a_section(
    tmp_path: Path, recipe_data: dict[str, Any]
) -> None:
    info = load_error(write(tmp_path, recipe_data), ("name.first=x",))
    assert problems_of(info) == ["name.first: name is 'tiny', not a section"]


def test_override_problems_reported_together(tmp_path: Path, recipe_data: dict[str, Any]) -> None:
    info = load_error(write(tmp_path, recipe_data), ("oops", "seed.x=1", "train.lr=0.1"))
    assert len(info.value.problems) == 2
    assert str(info.value).startswith(f"{tmp_path / 'r.yaml'} has 2 problems\n")


def test_overrides_do_not_touch_the_file(tmp_path: Path, recipe_data: dict[str, Any]) -> None:
    path = write(tmp_path, recipe_data)
    before = path.read_text(encoding="utf-8")
    load_recipe(path, ["train.lr=0.5"])
    assert path.read_text(encoding="utf-8") == before
    assert load_recipe(path).train.lr == 0.01


# ---------------------------------------------------------------- cross-field checks


def test_select_must_be_loss_ppl_or_listed_metric(recipe_data: dict[str, Any]) -> None:
    recipe_data["train"]["validation"]["select"] = "bleuu"
    with pytest.raises(RecipeError) as info:
        parse_recipe(recipe_data)
    assert problems_of(info) == [
        "train.validation.select: 'bleuu' is neither loss, ppl nor a metric listed in "
        "`metrics`. Did you mean 'bleu'? Known: loss, ppl, bleu"
    ]


def test_select_a_metric_that_is_not_listed(recipe_data: dict[str, Any]) -> None:
    recipe_data["train"]["validation"]["select"] = "chrf"
    with pytest.raises(RecipeError, match="'chrf' is neither loss, ppl nor a metric listed"):
        parse_recipe(recipe_data)


@pytest.mark.parametrize("select", ["loss", "ppl", "bleu", "chrf"])
def test_select_valid_choices(recipe_data: dict[str, Any], select: str) -> None:
    recipe_data["metrics"] = ["bleu", {"type": "chrf"}]
    recipe_data["train"]["validation"]["select"] = select
    assert parse_recipe(recipe_data).train.validation.select == select


def test_early_stopping_needs_valid(recipe_data: dict[str, Any]) -> None:
    del recipe_data["data"]["valid"]
    recipe_data["train"]["early_stopping"] = {"patience": 2}
    with pytest.raises(RecipeError) as info:
        parse_recipe(recipe_data)
    assert problems_of(info) == [
        "train.early_stopping: needs data.valid and train.validation.every > 0"
    ]


def test_early_stopping_needs_periodic_validation(recipe_data: dict[str, Any]) -> None:
    recipe_data["train"]["early_stopping"] = {}
    recipe_data["train"]["validation"]["every"] = 0
    with pytest.raises(RecipeError, match="train.early_stopping: needs data.valid"):
        parse_recipe(recipe_data)


def test_early_stopping_with_valid_is_fine(recipe_data: dict[str, Any]) -> None:
    recipe_data["train"]["early_stopping"] = {"patience": 2}
    assert parse_recipe(recipe_data).train.early_stopping == EarlyStopping(patience=2)


def test_share_embeddings_needs_joint_vocab(recipe_data: dict[str, Any]) -> None:
    recipe_data["model"]["share_embeddings"] = True
    recipe_data["data"]["joint_vocab"] = False
    with pytest.raises(RecipeError) as info:
        parse_recipe(recipe_data)
    assert problems_of(info) == [
        "model.share_embeddings: needs data.joint_vocab: true (one vocabulary)"
    ]
    recipe_data["data"]["joint_vocab"] = True
    assert parse_recipe(recipe_data).model.share_embeddings is True


def test_corpus_with_files_and_dataset(recipe_data: dict[str, Any]) -> None:
    recipe_data["data"]["train"]["dataset"] = "json"
    with pytest.raises(RecipeError) as info:
        parse_recipe(recipe_data)
    assert problems_of(info) == [
        "data.train: give one of: source/target files, a tsv file, or a dataset"
    ]


def test_corpus_with_only_a_source_file(recipe_data: dict[str, Any]) -> None:
    del recipe_data["data"]["valid"]["target"]
    with pytest.raises(RecipeError) as info:
        parse_recipe(recipe_data)
    assert problems_of(info) == ["data.valid: give both `source` and `target` files"]


def test_corpus_from_dataset(recipe_data: dict[str, Any]) -> None:
    recipe_data["data"]["train"] = {"dataset": "json", "data_files": ["a.jsonl", "b.jsonl"]}
    corpus = parse_recipe(recipe_data).data.train
    assert corpus.dataset == "json"
    assert corpus.data_files == ["a.jsonl", "b.jsonl"]
    assert corpus.source is None


@pytest.mark.parametrize("value", [1.5, -0.1])
def test_teacher_forcing_out_of_range(recipe_data: dict[str, Any], value: float) -> None:
    recipe_data["train"]["teacher_forcing"] = value
    with pytest.raises(RecipeError) as info:
        parse_recipe(recipe_data)
    assert problems_of(info) == ["train.teacher_forcing: ratios must be between 0 and 1"]


@pytest.mark.parametrize("value", [0, 0.5, 1])
def test_teacher_forcing_bounds_included(recipe_data: dict[str, Any], value: float) -> None:
    recipe_data["train"]["teacher_forcing"] = value
    assert parse_recipe(recipe_data).train.teacher_forcing == value


def test_positive_numbers(recipe_data: dict[str, Any]) -> None:
    recipe_data["train"]["lr"] = 0
    recipe_data["data"]["max_length"] = -1
    recipe_data["model"]["init_scale"] = 0
    with pytest.raises(RecipeError) as info:
        parse_recipe(recipe_data)
    assert problems_of(info) == [
        "data.max_length: must be positive, got -1",
        "train.lr: must be positive, got 0.0",
        "model.init_scale: must be positive, got 0.0",
    ]


def test_cross_check_problems_reported_together(recipe_data: dict[str, Any]) -> None:
    del recipe_data["data"]["valid"]
    recipe_data["data"]["joint_vocab"] = False
    recipe_data["model"]["share_embeddings"] = True
    recipe_data["train"]["early_stopping"] = {}
    recipe_data["train"]["teacher_forcing"] = 2
    recipe_data["train"]["validation"]["select"] = "rouge"
    with pytest.raises(RecipeError) as info:
        parse_recipe(recipe_data, source="r.yaml")
    assert [p.path for p in info.value.problems] == [
        "train.validation.select",
        "train.early_stopping",
        "model.share_embeddings",
        "train.teacher_forcing",
    ]
    assert str(info.value).startswith("r.yaml has 4 problems\n")


# ---------------------------------------------------------------- dump_recipe


def round_trip(recipe: Recipe) -> Recipe:
    return parse_recipe(yaml.safe_load(dump_recipe(recipe)))


def test_dump_round_trip(recipe_data: dict[str, Any]) -> None:
    recipe = parse_recipe(recipe_data)
    assert round_trip(recipe) == recipe


def test_dump_round_trip_with_every_kind_of_value(recipe_data: dict[str, Any]) -> None:
    recipe_data["name"] = "tëst ✓"
    recipe_data["model"]["attention"] = None
    recipe_data["metrics"] = ["bleu", {"type": "chrf"}]
    recipe_data["train"].update(
        lr=1,  # an int in YAML becomes a float
        clip_grad_norm=None,
        early_stopping={"patience": 3},
        optimizer={"type": "sgd", "momentum": 0.9},
    )
    recipe_data["train"]["validation"]["select"] = "chrf"
    recipe_data["data"]["valid"] = {"dataset": "json", "data_files": "v.jsonl", "split": "dev"}
    recipe = parse_recipe(recipe_data)
    assert type(recipe.train.lr) is float
    again = round_trip(recipe)
    assert again == recipe
    assert again.data.valid == Corpus(dataset="json", data_files="v.jsonl", split="dev")
    assert again.model.attention is None
    assert again.name == "tëst ✓"


def test_dump_is_a_loadable_recipe_file(tmp_path: Path, recipe_data: dict[str, Any]) -> None:
    recipe = parse_recipe(recipe_data)
    path = tmp_path / "resolved.yaml"
    path.write_text(dump_recipe(recipe), encoding="utf-8")
    assert load_recipe(path) == recipe
    assert load_recipe(path, ["seed=4"]).seed == 4


def test_dump_keeps_section_order(recipe_data: dict[str, Any]) -> None:
    dumped = yaml.safe_load(dump_recipe(parse_recipe(recipe_data)))
    assert list(dumped) == ["data", "name", "seed", "model", "train", "search", "metrics"]


@pytest.mark.parametrize(
    ("schedule", "k", "expected"),
    [
        ("constant", 1.0, [0.9, 0.9, 0.9]),
        ("linear", 0.01, [0.9, 0.8, 0.5]),  # max(end=0.5, 0.9 - 0.01 i) at i = 0, 10, 100
        ("exponential", 0.99, [0.9, 0.9 * 0.99**10, 0.9 * 0.99**100]),
        ("inverse_sigmoid", 10.0, [0.9 * 10 / 11, 0.9 * 10 / (10 + math.e), 0.5]),
    ],
)
def test_teacher_forcing_schedules(schedule: str, k: float, expected: list[float]) -> None:
    """Bengio et al. (2015) decays: the ratio at steps 0, 10 and 100, floored at `end`."""
    from seq2seq.recipe import TeacherForcing

    forcing = TeacherForcing(schedule=schedule, start=0.9, end=0.5, k=k)  # type: ignore[arg-type]
    got = [forcing.ratio(step) for step in (0, 10, 100)]
    assert got == pytest.approx([max(0.5, e) for e in expected])


def test_teacher_forcing_schedule_from_yaml_and_bad_k(tmp_path: Path) -> None:
    """A schedule mapping parses; an exponential base above 1 is refused."""
    recipe = tiny_recipe(tmp_path)
    recipe["train"]["teacher_forcing"] = {"schedule": "exponential", "k": 1.5}
    with pytest.raises(RecipeError, match=r"train.teacher_forcing.k: for exponential k must be"):
        parse_recipe(recipe)
    recipe["train"]["teacher_forcing"] = {"schedule": "linear", "k": 0.001}
    assert parse_recipe(recipe).train.teacher_forcing.schedule == "linear"


def test_copy_needs_joint_vocab(tmp_path: Path) -> None:
    """Copying maps source ids to target ids, so the vocabulary must be joint."""
    recipe = tiny_recipe(tmp_path)
    recipe["model"]["copy"] = True
    recipe["data"]["joint_vocab"] = False
    with pytest.raises(RecipeError, match="model.copy: copying needs data.joint_vocab"):
        parse_recipe(recipe)
