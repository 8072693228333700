"""The HTTP API through FastAPI's TestClient: results in order, attention, validation messages,
size limits, /info and /health, the page, and the batcher that shares the model."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from seq2seq.bundle import Loaded, load_run
from seq2seq.inference import translate_batch
from seq2seq.registry import build
from seq2seq.serve.app import create_app
from seq2seq.serve.batcher import Batcher, Busy
from seq2seq.serve.schemas import Limits


@pytest.fixture(scope="module")
def loaded(reversal_run: Path) -> Loaded:
    """The trained reversal run, loaded once."""
    return load_run(reversal_run)


@pytest.fixture(scope="module")
def client(loaded: Loaded) -> Iterator[TestClient]:
    """A client of the app with small limits, so the limit tests stay small."""
    limits = Limits(max_texts=4, max_chars=50, max_body_bytes=2000)
    with TestClient(create_app(loaded, limits)) as test_client:
        yield test_client


def alone(loaded: Loaded, text: str, search: Any = "greedy") -> str:
    """The best translation of one text decoded on its own."""
    return translate_batch(loaded, build("search", search, where="t"), [text])[0].text


def test_batch_results_come_back_in_input_order(client: TestClient, loaded: Loaded) -> None:
    """Each text gets its own translation, as if decoded alone; a blank text gives ""."""
    texts = ["1 2 3 4 5 6", "7 8", "", "9 0 1"]
    response = client.post("/translate", json={"text": texts})
    assert response.status_code == 200, response.text
    body = response.json()
    assert [t["source"] for t in body["translations"]] == texts
    assert [t["text"] for t in body["translations"]] == [alone(loaded, t) for t in texts]
    assert body["translations"][2] == {"source": "", "text": "", "hypotheses": []}
    assert body["search"]["type"] == "greedy"


def test_beam_n_best_sorted(client: TestClient, loaded: Loaded) -> None:
    """A single text with beam search: n_best outputs, best first, the best as `text`."""
    request = {"text": "3 1 4 1", "search": "beam", "beam_size": 4, "n_best": 3}
    body = client.post("/translate", json=request).json()
    (only,) = body["translations"]
    scores = [h["score"] for h in only["hypotheses"]]
    assert len(scores) == 3 and scores == sorted(scores, reverse=True)
    assert only["text"] == only["hypotheses"][0]["text"]
    beam = {"type": "beam", "beam_size": 4, "n_best": 3}
    assert only["text"] == alone(loaded, "3 1 4 1", beam)
    assert body["search"] == beam
    assert "attention" not in only["hypotheses"][0]


@pytest.mark.parametrize("search", ["greedy", "beam"])
def test_attention_has_one_row_per_target_piece(client: TestClient, search: str) -> None:
    """Rows: target pieces (</s> included); columns: source pieces; each row sums to one."""
    body = client.post(
        "/translate", json={"text": ["5 6 7", "8 9"], "attention": True, "search": search}
    ).json()
    for translation in body["translations"]:
        best = translation["hypotheses"][0]
        assert best["source_pieces"][-1] == "</s>" and best["target_pieces"][-1] == "</s>"
        assert len(best["attention"]) == len(best["target_pieces"])
        assert {len(row) for row in best["attention"]} == {len(best["source_pieces"])}
        assert all(abs(sum(row) - 1.0) < 1e-3 for row in best["attention"])
        assert best["target_pieces"][:-1] == translation["text"].split()


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"text": "1", "search": "beam", "beam_size": 0}, 422,
         "beam_size: Input should be greater than or equal to 1"),
        ({"text": "1", "search": "beam", "beam_size": 17}, 422,
         "beam_size: Input should be less than or equal to 16"),
        ({"text": "1", "search": "sample"}, 422, "search: Input should be 'greedy' or 'beam'"),
        ({"text": "1", "search": "beam", "beam_size": 2, "n_best": 4}, 422,
         "n_best (4) cannot exceed beam_size (2)"),
        ({"text": "1", "search": "greedy", "beam_size": 2}, 422,
         "beam_size: only for search 'beam', not 'greedy'"),
        ({"text": "1", "n_best": 2, "beam_size": 3}, 422,
         "beam_size, n_best: only for search 'beam'; add \"search\": \"beam\" (this model's "
         "default search is 'greedy')"),
        ({"text": "1", "search": "beam", "n_best": 9}, 422,
         "search: need beam_size ≥ 1 and 1 ≤ n_best ≤ beam_size, got 5, 9"),
        ({"text": "1", "max_length": 0}, 422, "max_length: Input should be greater than"),
        ({"text": "1", "beam": 3}, 422, "beam: Extra inputs are not permitted"),
        ({"texts": ["1"]}, 422, "text: Field required"),
        ({"text": 5}, 422, "text.str: Input should be a valid string"),
        ({"text": ["1"] * 5}, 413, "5 texts in one request; the limit is 4"),
        ({"text": ["1", "2 " * 30]}, 413, "text 1 has 60 characters; the limit is 50"),
        ({"text": "1", "pad": "x" * 3000}, 413, "request body of 3021 bytes; the limit is 2000"),
    ],
)  # fmt: skip
def test_bad_requests_get_a_clear_4xx(client, body, status, message) -> None:
    """Validation errors name the field and the rule; size limits answer 413."""
    response = client.post("/translate", json=body)
    assert response.status_code == status
    detail = response.json()["detail"]
    assert message in detail
    assert "--search" not in detail and "command line" not in detail and "recipe" not in detail


def test_a_lone_surrogate_is_422(client: TestClient) -> None:
    """`"\\ud800"` is valid JSON but not text: the request's error, named, not a decoding
    failure (the tokenizer raised TypeError, answered 500 with a traceback in the log)."""
    body = b'{"text": ["1 2", "3 \\ud800 4"]}'
    response = client.post("/translate", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert response.json() == {
        "detail": "text 1 is not valid Unicode: a lone surrogate (U+D800) at character 2"
    }


def test_non_json_body_is_422(client: TestClient) -> None:
    """A body that is not JSON is a validation error, not a server error."""
    response = client.post(
        "/translate", content=b"not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert "JSON" in response.json()["detail"]


def test_health_and_info(client: TestClient, loaded: Loaded) -> None:
    """/health says ok; /info summarises the recipe, sizes, vocabulary, versions and limits."""
    assert client.get("/health").json() == {"status": "ok", "pending": 0}
    info = client.get("/info").json()
    assert info["name"] == "tiny" and info["seq2seq_version"] == "0.1.0"
    assert info["model"]["encoder"]["type"] == "gru"
    assert info["model"]["decoder"]["hidden_size"] == 48
    assert info["vocab_sizes"] == loaded.meta["vocab_sizes"]
    assert info["parameters"] > 1000 and info["export"] is None and info["precision"] == "fp32"
    assert info["limits"]["max_texts"] == 4 and info["limits"]["max_beam_size"] == 16
    assert info["search"]["type"] == "greedy"


def test_page_is_self_contained(client: TestClient) -> None:
    """The page and its script load from the server; nothing is fetched from elsewhere."""
    page = client.get("/")
    script = client.get("/page.js")
    assert page.status_code == script.status_code == 200
    assert 'id="translate"' in page.text and '<script src="/page.js">' in page.text
    assert "javascript" in script.headers["content-type"]
    for text in (page.text, script.text):
        assert "http://" not in text and "https://" not in text and "//cdn" not in text


def test_queue_full_answers_503(loaded: Loaded) -> None:
    """When too many requests wait, the server says busy instead of queueing without end."""
    app = create_app(loaded, Limits(max_pending=1))
    with TestClient(app) as test_client:

        def refuse(*args: Any) -> None:
            raise Busy("1 requests are already waiting; retry shortly")

        app.state.batcher.submit = refuse
        response = test_client.post("/translate", json={"text": "1 2"})
    assert response.status_code == 503
    assert "retry shortly" in response.json()["detail"]


def test_batcher_groups_same_search_and_never_mixes(loaded: Loaded) -> None:
    """The oldest job takes later jobs with the same search into its batch, up to the sentence
    limit; the others keep their order; each job gets exactly its own translations, in order."""
    batcher = Batcher(loaded, batch_sentences=5, start=False)
    greedy = build("search", "greedy", where="t")
    beam = build("search", {"type": "beam", "beam_size": 3}, where="t")
    jobs = [
        batcher.submit(["1 2", "3 4"], greedy, "g", False),
        batcher.submit(["5 6 7"], greedy, "g", True),
        batcher.submit(["8 9"], beam, "b", False),
        batcher.submit(["1 1", "2 2", "3 3"], beam, "b", False),
        batcher.submit(["4 4 4", "5", "6 6"], beam, "b", False),
    ]
    jobs.append(batcher.submit(["7 7"], greedy, "g", False))  # joins the first group
    first = batcher._next_group()
    second = batcher._next_group()
    third = batcher._next_group()
    assert first == [jobs[0], jobs[1], jobs[5]]
    assert second == jobs[2:4] and third == [jobs[4]]
    for group in (first, second, third):
        batcher._decode(group)
    assert batcher.batches == 3
    beam_spec = {"type": "beam", "beam_size": 3}
    for job, spec in zip(jobs, ["greedy"] * 2 + [beam_spec] * 3 + ["greedy"], strict=True):
        results = job.future.result(timeout=1)
        assert [t.source for t in results] == job.texts
        assert [t.text for t in results] == [alone(loaded, text, spec) for text in job.texts]
    full = Batcher(loaded, max_pending=1, start=False)
    full.submit(["1"], greedy, "g", False)
    with pytest.raises(Busy, match="1 requests are already waiting; retry shortly"):
        full.submit(["2"], greedy, "g", False)


def test_serve_command_starts_uvicorn_on_loopback(reversal_run, monkeypatch, capsys) -> None:
    """`seq2seq serve RUN_DIR` builds the app with the limits given and listens on 127.0.0.1;
    with --port 0 the message names the port the system chose."""
    import uvicorn

    from seq2seq.cli import main

    started: dict[str, Any] = {}

    def fake_run(server: uvicorn.Server, sockets: list[Any]) -> None:
        started.update(app=server.config.app, address=sockets[0].getsockname())
        sockets[0].close()

    monkeypatch.setattr(uvicorn.Server, "run", fake_run)
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", str(reversal_run), "--max-texts", "3", "--port", "0"])
    assert exit_info.value.code == 0
    host, port = started["address"]
    assert host == "127.0.0.1" and port > 0
    with TestClient(started["app"]) as test_client:
        info = test_client.get("/info").json()
        assert info["limits"]["max_texts"] == 3 and info["precision"] == "fp32"
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", str(reversal_run), "--port", "0", "--precision", "int8-output"])
    assert exit_info.value.code == 0
    with TestClient(started["app"]) as test_client:
        assert test_client.get("/info").json()["precision"] == "int8-output"
        answer = test_client.post("/translate", json={"text": ["1 2 3"]})
        assert answer.status_code == 200 and answer.json()["translations"][0]["text"] == "3 2 1"
    assert f"serving {reversal_run} at http://127.0.0.1:{port}/" in capsys.readouterr().err


def test_serve_on_a_busy_port_is_one_message(reversal_run, capsys) -> None:
    """A port in use is one message and exit 1 (uvicorn alone exits 3, our internal-error code)."""
    import socket

    from tests.conftest import run_cli

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, _, err = run_cli(["serve", str(reversal_run), "--port", str(port)], capsys)
    assert code == 1
    assert err == f"error: cannot listen on 127.0.0.1:{port}: Address already in use\n"


def test_serve_without_the_extra_is_one_message(reversal_run, monkeypatch, capsys) -> None:
    """Without uvicorn/FastAPI installed the command says which extra to install."""
    from seq2seq.cli import main

    monkeypatch.setitem(sys.modules, "uvicorn", None)
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", str(reversal_run)])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert "seq2seq serve needs FastAPI and uvicorn (uvicorn is missing)" in err
    assert "pip install 'seq2seq[serve]'" in err


def test_a_request_that_went_away_is_skipped(loaded: Loaded) -> None:
    """A waiting job whose future was cancelled (its client is gone) is skipped, and the
    worker goes on: setting the result of a cancelled future used to kill the worker thread,
    leaving every later request waiting for ever."""
    batcher = Batcher(loaded, start=False)
    greedy = build("search", "greedy", where="t")
    gone = batcher.submit(["1 2"], greedy, "g", False)
    kept = batcher.submit(["3 4"], greedy, "g", False)
    assert gone.future.cancel()
    group = batcher._next_group()
    assert group == [gone, kept]
    batcher._decode(group)
    assert [t.text for t in kept.future.result(timeout=1)] == [alone(loaded, "3 4")]
    assert gone.future.cancelled()


def test_a_failing_request_fails_alone(loaded: Loaded, monkeypatch, caplog) -> None:
    """When decoding a shared batch fails, each request is decoded on its own, so only the one
    that fails gets the error; the others get their translations, and the worker lives on."""
    from seq2seq.serve import batcher as batcher_module

    def fussy(loaded: Loaded, search: Any, texts: list[str], **kwargs: Any) -> Any:
        if "boom" in texts:
            raise RuntimeError("this text breaks the model")
        return translate_batch(loaded, search, texts, **kwargs)

    monkeypatch.setattr(batcher_module, "translate_batch", fussy)
    batcher = Batcher(loaded, start=False)
    greedy = build("search", "greedy", where="t")
    jobs = [
        batcher.submit(["1 2"], greedy, "g", False),
        batcher.submit(["3", "boom"], greedy, "g", False),
        batcher.submit(["5 6"], greedy, "g", False),
    ]
    group = batcher._next_group()
    assert group == jobs
    with caplog.at_level(logging.ERROR, logger="seq2seq.serve.batcher"):
        batcher._decode(group)
    assert [t.text for t in jobs[0].future.result(timeout=1)] == [alone(loaded, "1 2")]
    assert [t.text for t in jobs[2].future.result(timeout=1)] == [alone(loaded, "5 6")]
    with pytest.raises(RuntimeError, match="this text breaks the model"):
        jobs[1].future.result(timeout=1)


def test_a_decoding_failure_is_a_json_500(loaded: Loaded, monkeypatch) -> None:
    """The page reads `detail` from every error answer, so a failure is JSON too."""
    from seq2seq.serve import batcher as batcher_module

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("out of memory")

    monkeypatch.setattr(batcher_module, "translate_batch", broken)
    with TestClient(create_app(loaded)) as test_client:
        response = test_client.post("/translate", json={"text": "1 2"})
        assert response.status_code == 500
        assert response.json() == {"detail": "decoding failed: RuntimeError: out of memory"}
        assert test_client.get("/health").json()["status"] == "ok"


def test_a_chunked_body_over_the_limit_is_413(client: TestClient) -> None:
    """A body sent without Content-Length (chunked) is counted as it arrives: the 1 MB limit
    cannot be bypassed by leaving out the header; a small chunked body still works."""

    def pieces(body: bytes) -> Iterator[bytes]:
        for start in range(0, len(body), 500):
            yield body[start : start + 500]

    headers = {"content-type": "application/json"}
    large = b'{"text": "1", "pad": "' + b"x" * 3000 + b'"}'
    response = client.post("/translate", content=pieces(large), headers=headers)
    assert response.status_code == 413
    assert response.json() == {"detail": "request body over 2000 bytes; the limit is 2000"}
    response = client.post("/translate", content=pieces(b'{"text": "1 2"}'), headers=headers)
    assert response.status_code == 200, response.text
