"""A burst of concurrent requests against a real server on loopback: every request is answered,
correctly and in its own order, while requests are queued and batched together."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from seq2seq.bundle import load_run
from seq2seq.inference import translate_batch
from seq2seq.registry import build
from seq2seq.serve.app import create_app
from tests.conftest import live_server, reversal_pairs

REQUESTS = 50
CLIENTS = 10


def make_requests() -> list[dict[str, Any]]:
    """50 requests of 1 to 4 texts, half greedy and half beam, in a fixed random mix."""
    rng = random.Random(5)
    sources = [s for s, _ in reversal_pairs(200, seed=17, max_len=6)]
    requests = []
    for index in range(REQUESTS):
        texts = rng.sample(sources, rng.randint(1, 4))
        search = {"search": "beam", "beam_size": 3} if index % 2 else {"search": "greedy"}
        requests.append({"text": texts, **search})
    return requests


def test_burst_of_concurrent_requests(reversal_run: Path) -> None:
    """10 clients send 50 requests at once; each answer matches decoding its texts directly."""
    loaded = load_run(reversal_run)
    requests = make_requests()
    expected = []
    for request in requests:
        spec = {"type": request["search"], **({"beam_size": 3} if "beam_size" in request else {})}
        found = translate_batch(loaded, build("search", spec, where="t"), request["text"])
        expected.append([t.text for t in found])
    app = create_app(loaded)
    with live_server(app) as url, httpx.Client(base_url=url, timeout=60) as client:

        def send(request: dict[str, Any]) -> tuple[int, list[str]]:
            response = client.post("/translate", json=request)
            return response.status_code, [t["text"] for t in response.json()["translations"]]

        with ThreadPoolExecutor(CLIENTS) as pool:
            answers = list(pool.map(send, requests, timeout=120))
        health = client.get("/health").json()
    assert [status for status, _ in answers] == [200] * REQUESTS
    assert [texts for _, texts in answers] == expected
    assert health == {"status": "ok", "pending": 0}
    print(f"{REQUESTS} requests decoded in {app.state.batcher.batches} batches")
