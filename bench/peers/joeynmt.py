"""JoeyNMT 2.3.0 on the matched setup: its config, training for a wall-clock budget (it saves
latest.ckpt on SIGINT), its log's throughput windows, and decoding (from its own virtualenv).

Pitfalls handled here: omitting `scheduling` raises a ConfigurationError, `plateau` crashes on
torch >= 2.6 and `decaying` ignores its step size, so a constant rate is ExponentialLR with
factor 1.0; `translate -o FILE` crashes after decoding ('BaseConfig' has no 'n_best'), so the
hypotheses are read from standard output; there is no console script (`python -m joeynmt`).
JoeyNMT logs target tokens/s only: the source rate is derived with the corpus's source/target
token ratio.
"""

from __future__ import annotations

import re
from pathlib import Path

from bench.measure import Timed, median_after, run_timed, thread_env
from bench.peers.prepare_data import target_tokens

NAME, VERSION = "JoeyNMT", "2.3.0"

CONFIG = """\
name: "matched"
joeynmt_version: "2.3.0"
model_dir: "{run}"
use_cuda: False
fp16: False
random_seed: 42
data:
  train: "{data}/train.sp"
  dev: "{data}/valid.sp"
  test: "{data}/test.sp"
  dataset_type: "plain"
  src: {{lang: "en", level: "word", lowercase: False, normalize: False, max_length: 100,
         voc_file: "{data}/vocab.shared.txt"}}
  trg: {{lang: "de", level: "word", lowercase: False, normalize: False, max_length: 100,
         voc_file: "{data}/vocab.shared.txt"}}
testing:
  n_best: 1
  beam_size: {beam}
  beam_alpha: -1
  batch_size: {batch}
  batch_type: "sentence"
  max_output_length: 250
  eval_metrics: ["bleu"]
  load_model: "{run}/latest.ckpt"
training:
  optimizer: "adam"
  adam_betas: [0.9, 0.999]
  learning_rate: 0.001
  scheduling: "exponential"   # with decrease_factor 1.0: a constant rate (see module docstring)
  decrease_factor: 1.0
  clip_grad_norm: 1.0
  batch_size: 2000
  batch_type: "token"
  normalization: "batch"
  epochs: 100
  validation_freq: 1000000    # no validation inside the budget
  logging_freq: {log_every}
  early_stopping_metric: "ppl"
  keep_best_ckpts: 1
  shuffle: True
  overwrite: True
  num_workers: 0
model:
  initializer: "xavier_uniform"
  bias_initializer: "zeros"
  tied_embeddings: False
  tied_softmax: False
  encoder:
    type: "recurrent"
    rnn_type: "gru"
    embeddings: {{embedding_dim: 256, scale: False}}
    hidden_size: 128
    bidirectional: True
    dropout: 0.2
    num_layers: 1
  decoder:
    type: "recurrent"
    rnn_type: "gru"
    embeddings: {{embedding_dim: 256, scale: False}}
    hidden_size: 256
    dropout: 0.2
    hidden_dropout: 0.2
    num_layers: 1
    input_feeding: True
    init_hidden: "last"
    attention: "bahdanau"
"""

STEP_LINE = re.compile(r"Step:\s+(\d+),.*Tokens per Sec:\s+(\d+)")


def _python(work: Path) -> str:
    return str(work / "joeynmt" / "venv" / "bin" / "python")


def write_config(
    work: Path, run: Path, name: str, log_every: int = 50, beam: int = 1, batch: int = 64
) -> Path:
    """A config file `name` for the run dir `run`."""
    run.parent.mkdir(parents=True, exist_ok=True)
    path = run.parent / f"{run.name}-{name}.yaml"
    text = CONFIG.format(run=run, data=work / "data", log_every=log_every, beam=beam, batch=batch)
    path.write_text(text, encoding="utf-8")
    return path


def train(work: Path, run: Path, budget: float, threads: int, log_every: int) -> tuple[Timed, Path]:
    """Train until SIGINT at `budget` seconds (JoeyNMT then saves latest.ckpt)."""
    config = write_config(work, run, "train", log_every)
    log = run.parent / f"{run.name}-train.stdout"
    log.unlink(missing_ok=True)
    command = [_python(work), "-m", "joeynmt", "train", str(config), "--skip-test"]
    return run_timed(command, budget=budget, log=log, env=thread_env(threads)), run / "train.log"


def throughput(work: Path, log: Path, warmup: int, log_every: int) -> dict[str, float | None]:
    """Median target tokens/s over the log's windows after `warmup` updates; source derived."""
    tgt: list[tuple[int, float]] = []
    last = 0
    if log.exists():
        for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
            match = STEP_LINE.search(line)
            if match:
                last = int(match.group(1))
                tgt.append((last - log_every, float(match.group(2))))
    rate = median_after(tgt, warmup - 1)
    src_tokens, tgt_tokens = target_tokens(work / "data")
    return {
        "tgt_tok_s": rate,
        "src_tok_s": None if rate is None else rate * src_tokens / tgt_tokens,
        "steps": last,
    }


def decode(
    work: Path, run: Path, source: Path, output: Path, beam: int, batch: int, threads: int
) -> Timed:
    """Translate the pre-segmented `source` into `output` (pieces, from standard output)."""
    if not (run / "latest.ckpt").exists():
        raise RuntimeError(f"{run} has no JoeyNMT checkpoint; train first")
    config = write_config(work, run, f"decode-beam{beam}", beam=beam, batch=batch)
    command = [_python(work), "-m", "joeynmt", "translate", str(config)]
    return run_timed(
        command,
        stdin=source,
        stdout=output,
        log=output.with_suffix(".log"),
        env=thread_env(threads),
    )
