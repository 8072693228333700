"""`seq2seq serve`: the JSON API and the translation page for a run dir or an export dir."""

from __future__ import annotations

import socket

import click

from seq2seq.cli.options import apply_precision, precision_option


@click.command("serve")
@click.argument("run_dir", type=click.Path())
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--max-texts", default=32, show_default=True, type=click.IntRange(min=1),
              help="Texts in one request.")  # fmt: skip
@click.option("--max-chars", default=2000, show_default=True, type=click.IntRange(min=1),
              help="Characters in one text.")  # fmt: skip
@click.option("--device", default="auto", show_default=True)
@click.option(
    "--checkpoint", type=click.Choice(["best", "latest"]), default="best", show_default=True
)
@precision_option
def serve_command(
    run_dir: str,
    host: str,
    port: int,
    max_texts: int,
    max_chars: int,
    device: str,
    checkpoint: str,
    precision: str,
) -> None:
    """Serve the model in RUN_DIR (a run dir or an export dir) over HTTP: page at /."""
    from seq2seq.errors import Seq2SeqError

    try:
        import uvicorn

        from seq2seq.serve.app import create_app
        from seq2seq.serve.schemas import Limits
    except ImportError as exc:
        raise Seq2SeqError(
            f"seq2seq serve needs FastAPI and uvicorn ({exc.name} is missing): "
            "pip install 'seq2seq[serve]'"
        ) from exc
    from seq2seq.bundle import load_run
    from seq2seq.device import pick_device

    listener = listen(host, port)  # before loading the model: a busy port fails at once
    loaded = load_run(run_dir, checkpoint, str(pick_device(device)))
    apply_precision(loaded.model, precision)
    app = create_app(loaded, Limits(max_texts=max_texts, max_chars=max_chars))
    address = f"[{host}]" if ":" in host else host
    bound = listener.getsockname()[1]  # the port the system chose for --port 0
    click.echo(f"serving {run_dir} at http://{address}:{bound}/ (Ctrl-C stops)", err=True)
    # log_config=None: uvicorn's warnings go through seq2seq's logging set-up, not its own
    config = uvicorn.Config(app, log_level="warning", log_config=None)
    uvicorn.Server(config).run(sockets=[listener])


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to host:port; an address in use or not on this machine is one message
    (uvicorn would log it and exit with status 3, the code of an internal error here)."""
    from seq2seq.errors import Seq2SeqError

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError as exc:
        listener.close()
        raise Seq2SeqError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    return listener


COMMANDS = [serve_command]
