"""The quality and decode tables of bench/run_all.py: medians over rounds, and ratios of each of
our decoding precisions (fp32, int8-output) to each peer."""

from __future__ import annotations

import statistics
from typing import Any

from bench.measure import fmt, ratio, table

NAMES = {
    "seq2seq": "seq2seq",
    "seq2seq-int8": "seq2seq int8-output",
    "joeynmt": "JoeyNMT 2.3.0",
    "opennmt": "OpenNMT-py 3.5.1",
}
# our systems: the trained model, decoded with `--precision` fp32 and int8-output
OURS = {"seq2seq": "fp32", "seq2seq-int8": "int8-output"}
SEARCHES = (("beam1", "greedy"), ("beam5", "beam 5"))


def median_decoding(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One system's decoding of one search over rounds: the median wall and start-up times (and
    the rates they give), the largest peak RSS, and the scores of the first round (the outputs
    do not change)."""
    wall = statistics.median(r["wall"] for r in rounds)
    startup = statistics.median(r["startup"] for r in rounds)
    lines = round(rounds[0]["sent_s"] * rounds[0]["wall"])  # sentences decoded
    work = wall - startup
    return {
        **rounds[0],
        "wall": wall,
        "startup": startup,
        "sent_s": lines / wall,
        "sent_s_excl": lines / work if work > 0 else None,
        "peak_rss_mib": max(r["peak_rss_mib"] for r in rounds),
        "rounds": [{k: r[k] for k in ("wall", "startup", "sent_s", "sent_s_excl")} for r in rounds],
    }


def print_round_ratios(results: dict[str, dict[str, Any]]) -> None:
    """Each of ours ÷ each peer in every round, with and without start-up."""
    for mine in (k for k in OURS if k in results):
        ours = results[mine]
        if len(ours["beam1"]["rounds"]) < 2:
            continue
        for key, r in results.items():
            if key in OURS:
                continue
            for b, label in SEARCHES:
                pairs = zip(ours[b]["rounds"], r[b]["rounds"], strict=True)
                cells = [
                    f"{ratio(m['sent_s'], p['sent_s'])} / "
                    f"{ratio(m['sent_s_excl'], p['sent_s_excl'])}"
                    for m, p in pairs
                ]
                print(
                    f"- {label}, {NAMES[mine]} ÷ {NAMES[key]} per round (incl. / excl.): "
                    f"{', '.join(cells)}"
                )


def print_precision_ratios(results: dict[str, dict[str, Any]]) -> None:
    """int8-output ÷ fp32 for our model, with and without start-up."""
    if not all(key in results for key in OURS):
        return
    fast, plain = results["seq2seq-int8"], results["seq2seq"]
    cells = [
        f"{label} {ratio(fast[b]['sent_s'], plain[b]['sent_s'])} / "
        f"{ratio(fast[b]['sent_s_excl'], plain[b]['sent_s_excl'])}"
        for b, label in SEARCHES
    ]
    print(f"- ours int8-output ÷ fp32 (incl. / excl. start-up): {', '.join(cells)}")


def print_quality(results: dict[str, dict[str, Any]], decode_only: bool) -> None:
    """Quality and decode tables; the decode table's peer rows carry ours ÷ peer for each of
    our precisions."""
    if not decode_only:
        rows = [
            [NAMES[key], str(r.get("steps", "–"))]
            + [fmt(r[b][m], 2) for b, _ in SEARCHES for m in ("bleu", "chrf")]
            for key, r in results.items()
        ]
        header = ["system", "updates", "BLEU greedy", "chrF greedy", "BLEU beam5", "chrF beam5"]
        print(table(header, rows))
        print()
    ours = [k for k in OURS if k in results]
    rows = []
    for key, r in results.items():
        for b, label in SEARCHES:
            d = r[b]
            cells = [NAMES[key], label, fmt(d["sent_s"], 1), fmt(d["sent_s_excl"], 1)]
            cells += [fmt(d.get("length"), 2), fmt(d["wall"], 1), fmt(d["peak_rss_mib"])]
            for mine in ours:
                if key in OURS:
                    cells += ["", ""]
                    continue
                cells += [
                    ratio(results[mine][b]["sent_s"], d["sent_s"]),
                    ratio(results[mine][b]["sent_s_excl"], d["sent_s_excl"]),
                ]
            rows.append(cells)
    header = ["system", "search", "sent/s incl. start-up", "sent/s excl."]
    header += ["output ÷ ref length", "wall s", "peak RSS MiB"]
    for mine in ours:
        header += [f"{OURS[mine]} ÷ peer (incl.)", f"{OURS[mine]} ÷ peer (excl.)"]
    print(table(header, rows))
