"""The HTTP server: JSON API (/translate, /health, /info) and the translation page (/)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

import torch
from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from seq2seq import __version__, registry
from seq2seq.assemble import count_parameters
from seq2seq.bundle import Loaded
from seq2seq.cli.options import build_search, search_spec
from seq2seq.errors import Problem, RecipeError, Seq2SeqError
from seq2seq.modules.projection import output_precision
from seq2seq.serve.batcher import Batcher, Busy
from seq2seq.serve.schemas import Limits, TranslateRequest, TranslateResponse, TranslationOut

STATIC = ("page.html", "page.js")


def model_info(loaded: Loaded, limits: Limits) -> dict[str, Any]:
    """The recipe summary /info returns: components, sizes, vocabulary, versions, limits."""
    recipe = loaded.recipe.to_dict()
    export = loaded.meta.get("export")
    parameters = None if export else count_parameters(loaded.model)
    return {
        "name": recipe["name"],
        "seq2seq_version": __version__,
        "torch_version": torch.__version__,
        "trained_with": {
            "seq2seq": loaded.meta.get("seq2seq_version"),
            "torch": loaded.meta.get("torch_version"),
        },
        "checkpoint": loaded.checkpoint.name,
        "export": None if not export else {k: export.get(k) for k in ("runtime", "quantize")},
        "precision": None if export else output_precision(loaded.model),
        "model": recipe["model"],
        "parameters": parameters,
        "tokenizer": recipe["data"]["tokenizer"],
        "vocab_sizes": loaded.meta.get("vocab_sizes"),
        "search": {"type": default_search(loaded), **_recipe_search_options(loaded)},
        "limits": limits.to_dict(),
    }


def default_search(loaded: Loaded) -> str:
    """The recipe's search when it is greedy or beam, else greedy (the page offers these two)."""
    name = registry.split_spec(loaded.recipe.search)[0]
    return name if name in ("greedy", "beam") else "greedy"


def _recipe_search_options(loaded: Loaded) -> dict[str, Any]:
    name, kwargs = registry.split_spec(loaded.recipe.search)
    return kwargs if name == default_search(loaded) else {}


def request_search(loaded: Loaded, request: TranslateRequest) -> dict[str, Any]:
    """The search spec for a request: the recipe's search with the request's options; a
    RecipeError names the request's fields."""
    options = {
        "beam_size": request.beam_size,
        "n_best": request.n_best,
        "length_penalty": request.length_penalty,
    }
    name = request.search or default_search(loaded)
    beam_only = [key for key, value in options.items() if value is not None]
    if name != "beam" and beam_only:  # search "greedy" given explicitly is the schema's check
        raise RecipeError(
            "the request",
            [Problem(", ".join(beam_only), f"only for search 'beam'; add \"search\": \"beam\" "
                     f"(this model's default search is '{name}')")],
        )  # fmt: skip
    spec: dict[str, Any] = search_spec(loaded.recipe.search, name, request.max_length, **options)
    return spec


def _request_problems(exc: RecipeError) -> str:
    """A search problem in the request's terms: `n_best: ...`, not `--search.n_best: ...`."""
    fields = [
        Problem(p.path.removeprefix("--search.").replace("--search", "search"), p.message)
        for p in exc.problems
    ]
    return "; ".join(str(problem) for problem in fields)


def _check_sizes(texts: list[str], limits: Limits) -> None:
    if len(texts) > limits.max_texts:
        raise HTTPException(
            413, f"{len(texts)} texts in one request; the limit is {limits.max_texts}"
        )
    for index, text in enumerate(texts):
        if len(text) > limits.max_chars:
            raise HTTPException(
                413, f"text {index} has {len(text)} characters; the limit is {limits.max_chars}"
            )


def _check_unicode(texts: list[str]) -> None:
    """JSON can carry lone surrogates (`"\\ud800"`), which are not text: the tokenizer cannot
    take them, so they are the request's error (422), not a decoding failure."""
    for index, text in enumerate(texts):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise HTTPException(
                422,
                f"text {index} is not valid Unicode: a lone surrogate "
                f"(U+{ord(text[exc.start]):04X}) at character {exc.start}",
            ) from exc


def _validation_message(exc: RequestValidationError) -> str:
    """pydantic's errors as one line: `beam_size: Input should be less than or equal to 16`."""
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body")
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)


class BodyLimit:
    """ASGI middleware: 413 for a request body over `limit` bytes, whether the client declares
    its length or sends it in chunks (then the body is counted as it arrives, and held back from
    the route until it is complete and within the limit)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            await self._refuse(f"request body of {int(declared)} bytes", scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.limit:
                await self._refuse(f"request body over {self.limit} bytes", scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        whole: Message | None = {"type": "http.request", "body": b"".join(chunks)}

        async def replay() -> Message:
            nonlocal whole
            if whole is None:
                return await receive()
            message, whole = whole, None
            return message

        await self.app(scope, replay, send)

    async def _refuse(self, what: str, scope: Scope, receive: Receive, send: Send) -> None:
        answer = JSONResponse({"detail": f"{what}; the limit is {self.limit}"}, status_code=413)
        await answer(scope, receive, send)


def _page(name: str) -> str:
    return (resources.files("seq2seq.serve") / "static" / name).read_text("utf-8")


def create_app(loaded: Loaded, limits: Limits | None = None) -> FastAPI:
    """The application serving `loaded` (a run dir or export dir)."""
    limits = limits or Limits()
    batcher = Batcher(loaded, limits.batch_sentences, limits.max_pending)
    info = model_info(loaded, limits)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        batcher.close()

    app = FastAPI(title=f"seq2seq: {info['name']}", version=__version__, lifespan=lifespan)
    app.state.batcher = batcher

    app.add_middleware(BodyLimit, limit=limits.max_body_bytes)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _validation_message(exc)}, status_code=422)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(_page("page.html"))

    @app.get("/page.js", include_in_schema=False)
    async def script() -> Response:
        return Response(_page("page.js"), media_type="text/javascript")

    @app.get("/health")
    async def health() -> dict[str, Any]:
        """Liveness: the model is loaded and the worker runs."""
        alive = batcher.worker.is_alive()
        return {"status": "ok" if alive else "stopped", "pending": batcher.pending()}

    @app.get("/info")
    async def get_info() -> dict[str, Any]:
        """The model's recipe summary, versions and the request limits."""
        return info

    @app.post("/translate", response_model=TranslateResponse, response_model_exclude_none=True)
    async def translate(request: TranslateRequest) -> TranslateResponse:
        """Translate one text or a list of texts; results come back in input order."""
        texts = request.texts()
        _check_sizes(texts, limits)
        _check_unicode(texts)
        try:
            spec = request_search(loaded, request)
            search = build_search(spec)
        except Seq2SeqError as exc:
            detail = _request_problems(exc) if isinstance(exc, RecipeError) else str(exc)
            raise HTTPException(422, detail) from exc
        key = json.dumps(spec, sort_keys=True)
        try:
            job = batcher.submit(texts, search, key, request.attention)
        except Busy as exc:
            raise HTTPException(503, str(exc)) from exc
        try:
            results = await asyncio.wrap_future(job.future)
        except Seq2SeqError as exc:
            raise HTTPException(422, str(exc)) from exc
        except Exception as exc:  # a JSON answer the page can show, not a bare 500 page
            raise HTTPException(500, f"decoding failed: {type(exc).__name__}: {exc}") from exc
        translations = [
            TranslationOut.model_validate(
                {"source": t.source, "text": t.text, "hypotheses": t.records(request.attention)}
            )
            for t in results
        ]
        return TranslateResponse(translations=translations, search=spec)

    return app
