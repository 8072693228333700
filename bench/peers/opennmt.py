"""OpenNMT-py 3.5.1 on the matched setup: its config, training for a wall-clock budget, its log's
throughput windows, and decoding with onmt_translate (run from its own virtualenv).

Pitfalls handled here: checkpoints pickle an argparse.Namespace, which torch >= 2.6 refuses to
load by default (TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1); `n_sample: -1` must not be in the training
config (onmt_train would dump samples and exit 0 without training), so it is passed to
onmt_build_vocab only; onmt_train has no graceful stop, so checkpoints are saved often.
"""

from __future__ import annotations

import re
from pathlib import Path

from bench.measure import Timed, median_after, run_timed, thread_env

NAME, VERSION = "OpenNMT-py", "3.5.1"

CONFIG = """\
save_data: {run}/data
src_vocab: {work}/opennmt/vocab.shared
tgt_vocab: {work}/opennmt/vocab.shared
share_vocab: true
overwrite: true
data:
  corpus_1:
    path_src: {data}/train.sp.en
    path_tgt: {data}/train.sp.de
    transforms: [filtertoolong]
  valid:
    path_src: {data}/valid.sp.en
    path_tgt: {data}/valid.sp.de
src_seq_length: 100
tgt_seq_length: 100
encoder_type: brnn          # bidirectional: hidden_size is split over the two directions
decoder_type: rnn
rnn_type: GRU
enc_layers: 1
dec_layers: 1
hidden_size: 256
word_vec_size: 256
global_attention: mlp       # additive (Bahdanau)
input_feed: 1
dropout: [0.2]
share_embeddings: false
optim: adam
learning_rate: 0.001
max_grad_norm: 1.0
batch_type: tokens
batch_size: 2000
valid_batch_size: 2000
normalization: sents
accum_count: [1]
train_steps: 1000000        # stopped by the wall-clock budget
valid_steps: 1000000        # no validation inside the budget
report_every: {report_every}
save_model: {run}/model
save_checkpoint_steps: {save_every}
keep_checkpoint: 2
seed: 42
num_workers: 0              # the two cores stay with torch
log_file: {run}/train.log
"""

STEP_LINE = re.compile(r"Step\s+(\d+)/\s*\d+;.*?(\d+)/\s*(\d+) tok/s;")


def _bin(work: Path, tool: str) -> str:
    return str(work / "opennmt" / "venv" / "bin" / tool)


def _env(threads: int) -> dict[str, str]:
    return {**thread_env(threads), "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}


def write_config(work: Path, run: Path, report_every: int, save_every: int) -> Path:
    """The training config for `run`."""
    run.mkdir(parents=True, exist_ok=True)
    path = run / "onmt_train.yaml"
    path.write_text(
        CONFIG.format(
            run=run,
            work=work,
            data=work / "data",
            report_every=report_every,
            save_every=save_every,
        ),
        encoding="utf-8",
    )
    return path


def build_vocab(work: Path, threads: int) -> None:
    """The shared piece list (also JoeyNMT's voc_file), built once from the training data."""
    vocab = work / "opennmt" / "vocab.shared"
    if vocab.exists():
        return
    config = write_config(work, work / "opennmt" / "vocab-run", 50, 100)
    command = [_bin(work, "onmt_build_vocab"), "-config", str(config), "-n_sample", "-1"]
    done = run_timed(command, log=work / "opennmt" / "build_vocab.log", env=_env(threads))
    if done.returncode:
        raise RuntimeError(f"onmt_build_vocab failed; see {work}/opennmt/build_vocab.log")
    pieces = [line.split("\t")[0] for line in vocab.read_text(encoding="utf-8").splitlines()]
    (work / "data" / "vocab.shared.txt").write_text("\n".join(pieces) + "\n", encoding="utf-8")


def train(
    work: Path, run: Path, budget: float, threads: int, report_every: int, save_every: int
) -> tuple[Timed, Path]:
    """Train until SIGINT at `budget` seconds; returns the process's timing and its log."""
    build_vocab(work, threads)
    for old in run.glob("model_step_*.pt"):
        old.unlink()
    config = write_config(work, run, report_every, save_every)
    log = run / "train.stdout"
    log.unlink(missing_ok=True)
    command = [_bin(work, "onmt_train"), "-config", str(config)]
    return run_timed(command, budget=budget, log=log, env=_env(threads)), log


def throughput(log: Path, warmup: int, report_every: int) -> dict[str, float | None]:
    """Median target and source tokens/s over the log's windows after `warmup` updates."""
    tgt: list[tuple[int, float]] = []
    src: list[tuple[int, float]] = []
    last = 0
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        match = STEP_LINE.search(line)
        if match:
            step = int(match.group(1))
            last = step
            tgt.append((step - report_every, float(match.group(3))))
            src.append((step - report_every, float(match.group(2))))
    return {
        "tgt_tok_s": median_after(tgt, warmup - 1),
        "src_tok_s": median_after(src, warmup - 1),
        "steps": last,
    }


def last_checkpoint(run: Path) -> Path | None:
    """The newest model_step_N.pt."""
    found = sorted(run.glob("model_step_*.pt"), key=lambda p: int(p.stem.rsplit("_", 1)[1]))
    return found[-1] if found else None


def decode(
    work: Path, run: Path, source: Path, output: Path, beam: int, batch: int, threads: int
) -> Timed:
    """onmt_translate the pre-segmented `source` into `output` (pieces)."""
    checkpoint = last_checkpoint(run)
    if checkpoint is None:
        raise RuntimeError(f"{run} has no OpenNMT-py checkpoint; train first")
    command = [
        _bin(work, "onmt_translate"),
        "-model",
        str(checkpoint),
        "-src",
        str(source),
        "-output",
        str(output),
        "-beam_size",
        str(beam),
        "-batch_size",
        str(batch),
        "-max_length",
        "250",
        "-gpu",
        "-1",
    ]
    return run_timed(command, log=output.with_suffix(".log"), env=_env(threads))
