"""One command per table: seq2seq, JoeyNMT 2.3.0 and OpenNMT-py 3.5.1 measured one after the
other in one run, printed as a markdown table with ratios (ours ÷ peer) and the machine.

Usage: python bench/run_all.py --table train|decode|quality [--minutes M] [--work DIR]
       [--threads 2] [--systems seq2seq,seq2seq-int8,joeynmt,opennmt] [--test-lines N]
       [--rounds R]
  train    every system trains for M minutes (default 5); target/source tokens/s (median of
           10-update windows after 30 warm-up updates), epoch time, peak RSS; ours in fp32 and bf16
  quality  every system trains for M minutes (default 20) of wall clock, then decodes the test
           set greedily and with beam 5 (batch 64): BLEU/chrF, and the decode table;
           seq2seq-int8 decodes seq2seq's model with `--precision int8-output`
  decode   the decode table from the models the last `quality` run left in WORK (trains for M
           minutes first when a system has none)
With --rounds R the decoding of quality and decode runs R times, the systems one after the
other in each round; the table gives each system's median wall and start-up times, and the
ratios of every round follow it (the machine's speed drifts by a third within an hour).
Needs the peers installed: bash bench/peers/install.sh [WORK] (default WORK ../peers-work).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import quality, train_speed
from bench.decode_report import (
    OURS,
    median_decoding,
    print_precision_ratios,
    print_quality,
    print_round_ratios,
)
from bench.measure import (
    Timed,
    machine,
    ratio,
    read_text,
    score,
    table,
    time_decoding,
)
from bench.peers import joeynmt, opennmt, prepare_data

PEERS = {"joeynmt": joeynmt, "opennmt": opennmt}
WINDOW = 10


def train_table(args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    """Throughput rows, ours first."""
    rows: list[dict[str, Any]] = []
    if "seq2seq" in args.systems:
        options = train_speed.parse_args(
            [
                "--seconds",
                str(args.minutes * 60),
                "--threads",
                str(args.threads),
                "--warmup",
                str(args.warmup),
            ]
        )
        for precision in args.precisions.split(","):
            rows.append(train_speed.run_child(options, precision))
    for key in ("joeynmt", "opennmt"):
        if key not in args.systems:
            continue
        peer = PEERS[key]
        run = work / key / "speed"
        if key == "opennmt":
            timed, log = opennmt.train(work, run, args.minutes * 60, args.threads, WINDOW, 10**6)
            speed = opennmt.throughput(log, args.warmup, WINDOW)
        else:
            timed, log = joeynmt.train(work, run, args.minutes * 60, args.threads, WINDOW)
            speed = joeynmt.throughput(work, log, args.warmup, WINDOW)
        _, tgt_tokens = prepare_data.target_tokens(work / "data")
        rate = speed["tgt_tok_s"]
        rows.append(
            {
                "system": f"{peer.NAME} {peer.VERSION}",
                "precision": "fp32",
                **speed,
                "epoch_min": tgt_tokens / rate / 60 if rate else None,
                "peak_rss_mib": timed.peak_rss_mib,
            }
        )
    return rows


def print_train(rows: list[dict[str, Any]]) -> None:
    """The training table and the ratios of our best precision to each peer."""
    print(
        table(
            [*train_speed.ROW_HEADER, "updates"],
            [[*train_speed.row(r), str(r.get("steps", "–"))] for r in rows],
        )
    )
    ours = [r for r in rows if r["system"] == "seq2seq"]
    for peer in (r for r in rows if r["system"] != "seq2seq"):
        for mine in ours:
            print(
                f"- ours {mine['precision']} ÷ {peer['system']}: tgt tok/s "
                f"{ratio(mine['tgt_tok_s'], peer['tgt_tok_s'])}, peak RSS "
                f"{ratio(mine['peak_rss_mib'], peer['peak_rss_mib'])}"
            )


def train_system(key: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Train one system for the wall-clock budget into WORK/<key>/quality."""
    run = work / key / "quality"
    budget = args.minutes * 60
    if key == "seq2seq":
        timed: Timed = quality.train_for(run, args.minutes, args.threads, [])
        steps = quality.steps_done(run)
    elif key == "opennmt":
        # no graceful stop: the last checkpoint is what counts (every 100 updates, as in the
        # peers' reference runs; every 10 in short smoke runs)
        save_every = 100 if args.minutes >= 10 else 10
        timed, log = opennmt.train(work, run, budget, args.threads, 50, save_every)
        steps = opennmt.throughput(log, 0, 50)["steps"]
    else:
        timed, log = joeynmt.train(work, run, budget, args.threads, 50)
        steps = joeynmt.throughput(work, log, 0, 50)["steps"]
    return {"train_wall": timed.wall, "train_rss": timed.peak_rss_mib, "steps": steps}


def decode_system(key: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Greedy and beam-5 decoding of the test set: timings and scores."""
    source, reference = quality.test_files(work / "test-slice", args.test_lines)
    if key in OURS:  # one trained model, decoded in each precision
        run = work / "seq2seq" / "quality"
        return quality.evaluate(run, source, reference, args.threads, OURS[key])
    run = work / key / "quality"
    peer = PEERS[key]
    pieces = work / "test-slice" / "test.sp.en"
    pieces.parent.mkdir(parents=True, exist_ok=True)  # the full test set makes no slice folder
    pieces.write_text(
        "\n".join(read_text(work / "data" / "test.sp.en")[: len(read_text(source))]) + "\n",
        encoding="utf-8",
    )
    model = work / "data" / "spm8k.model"
    results = {}
    for beam in (1, 5):
        out = work / key / f"quality-test.beam{beam}.sp"

        def decode(src: Path, dst: Path, beam: int = beam) -> Timed:
            return peer.decode(work, run, src, dst, beam, 64, args.threads)

        timing = time_decoding(decode, pieces, out)
        hyps = prepare_data.decode_pieces(model, read_text(out))
        results[f"beam{beam}"] = {**timing, **score(hyps, read_text(reference))}
    return results


def decode_rounds(args: argparse.Namespace, work: Path) -> dict[str, dict[str, Any]]:
    """Every system's decoding, `args.rounds` times in turn, reduced to medians."""
    rounds: dict[str, list[dict[str, Any]]] = {key: [] for key in args.systems}
    for _ in range(args.rounds):
        for key in args.systems:
            rounds[key].append(decode_system(key, args, work))
    return {
        key: {b: median_decoding([r[b] for r in runs]) for b in runs[0]}
        for key, runs in rounds.items()
    }


def main() -> None:
    """Run the systems one after the other and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--table", choices=["train", "decode", "quality"], required=True)
    parser.add_argument("--minutes", type=float)
    parser.add_argument("--work", default=str(prepare_data.default_work()))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--systems", default="seq2seq,seq2seq-int8,joeynmt,opennmt")
    parser.add_argument(
        "--precisions", default="fp32,bf16-output,bf16-products", help="ours (train)"
    )
    parser.add_argument("--warmup", type=int, default=30, help="updates not counted (train)")
    parser.add_argument("--test-lines", type=int, help="decode only the first N test sentences")
    parser.add_argument("--rounds", type=int, default=1, help="decode every system R times")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    args.systems = args.systems.split(",")
    args.minutes = args.minutes or (5.0 if args.table == "train" else 20.0)
    work = Path(args.work).resolve()
    data = work / "data"
    prepare_data.segment(prepare_data.train_model(data), data)
    if any(k in args.systems for k in PEERS):
        opennmt.build_vocab(work, args.threads)
    header = f"machine: {machine()}; {args.threads} threads; budget {args.minutes:g} min"
    if args.table == "train":
        rows = train_table(args, work)
        print(header)
        print_train(rows)
        (work / "results-train.json").write_text(json.dumps(rows, indent=1))
        return
    trained: dict[str, dict[str, Any]] = {key: {} for key in args.systems}
    models = dict.fromkeys("seq2seq" if k in OURS else k for k in args.systems)  # ours: one
    for key in models:
        if args.table == "quality" or not (work / key / "quality").exists():
            models[key] = train_system(key, args, work)
    for key in args.systems:
        trained[key] = models["seq2seq" if key in OURS else key] or {}
    decoded = decode_rounds(args, work)
    results = {key: {**trained[key], **decoded[key]} for key in args.systems}
    if args.test_lines:
        header += f"; first {args.test_lines} test sentences"
    print(header + (f"; decoding: medians of {args.rounds} rounds" if args.rounds > 1 else ""))
    print_quality(results, args.table == "decode")
    print_precision_ratios(results)
    print_round_ratios(results)
    (work / f"results-{args.table}.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
