"""The translation server (`seq2seq serve`): a JSON API and a page; needs the `serve` extra.

app.py      FastAPI application: routes, validation messages, size limits
batcher.py  the worker thread that owns the model and batches concurrent requests
schemas.py  request and response models, limits
static/     the page (HTML + JS, nothing fetched from elsewhere)
"""
