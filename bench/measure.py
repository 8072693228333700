"""How every benchmark measures: the machine, child processes (wall time and their own peak
RSS), window statistics, scores and markdown tables. Shared by ours and the peers' scripts."""

from __future__ import annotations

import os
import platform
import signal
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "ddtp-de-en"
CPU_NOTE = (
    "medians of this process's CPU time (one thread: the time the work took; unlike wall time "
    "it does not grow when other processes share the cores)"
)


@dataclass
class Timed:
    """What one child process took."""

    wall: float  # seconds, start-up included
    peak_rss_mib: float  # the child's own maximum resident set size
    returncode: int


def run_timed(
    command: Sequence[str],
    *,
    budget: float | None = None,
    stdin: Path | None = None,
    stdout: Path | None = None,
    log: Path | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> Timed:
    """Run `command`; after `budget` seconds send SIGINT (then SIGKILL 120 s later).

    Standard output goes to `stdout` when given, else with standard error to `log`.

    os.wait4 gives this child's own rusage, so peak RSS is not mixed up between runs.
    """
    full_env = {**os.environ, **(env or {})}
    with (
        open(stdin or os.devnull, "rb") as fin,
        open(log or os.devnull, "ab") as flog,
        open(stdout or os.devnull, "wb") as fout,
    ):
        start = time.perf_counter()
        child = subprocess.Popen(
            list(command),
            stdin=fin,
            stdout=fout if stdout is not None else flog,
            stderr=flog,
            env=full_env,
            cwd=cwd,
            preexec_fn=_default_sigint,
        )
        deadline = None if budget is None else start + budget
        while True:
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                break
            now = time.perf_counter()
            if deadline is not None and now >= deadline:
                child.send_signal(signal.SIGINT)
                deadline = None
                kill_at = now + 120
            elif deadline is None and budget is not None and now >= kill_at:
                child.kill()
            time.sleep(0.05)
        wall = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    return Timed(wall, usage.ru_maxrss / 1024, child.returncode)


def _default_sigint() -> None:
    """In the child: SIGINT back to its default. A benchmark started in the background
    (`nohup ... &`) inherits SIGINT ignored, and Python then never raises KeyboardInterrupt:
    JoeyNMT would not save at the budget and OpenNMT-py would train on until the SIGKILL."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def thread_env(threads: int) -> dict[str, str]:
    """Environment pinning torch/OpenMP/MKL to `threads` threads."""
    return {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


def median_after(windows: Sequence[tuple[int, float]], warmup_steps: int) -> float | None:
    """Median rate of the (end step, rate) windows that start after `warmup_steps`."""
    rates = [rate for step, rate in windows if step > warmup_steps]
    return statistics.median(rates) if rates else None


def machine() -> str:
    """One line: CPU model, cores, memory, torch version, load average."""
    cpu = platform.processor() or "cpu"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = ""
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        kib = int(meminfo.read_text().split()[1])
        memory = f", {kib / 2**20:.0f} GiB RAM"
    import torch

    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{cpu}, {os.cpu_count()} cores{memory}, torch {torch.__version__}, "
        f"Python {platform.python_version()}, load average {load}"
    )


def score(hyps: Sequence[str], refs: Sequence[str]) -> dict[str, float]:
    """sacrebleu's default corpus BLEU and chrF, and the output's length ÷ the reference's
    (sentences/s depends on how long the outputs are, so the tables show it beside them)."""
    import sacrebleu

    bleu = sacrebleu.corpus_bleu(list(hyps), [list(refs)])
    return {
        "bleu": bleu.score,
        "chrf": sacrebleu.corpus_chrf(list(hyps), [list(refs)]).score,
        "length": bleu.sys_len / max(bleu.ref_len, 1),
    }


def read_text(path: Path) -> list[str]:
    """Lines of a UTF-8 file without line ends."""
    return path.read_text(encoding="utf-8").splitlines()


def fmt(value: float | None, digits: int = 0) -> str:
    """A number for a table ('–' when missing), thousands separated."""
    return "–" if value is None else f"{value:,.{digits}f}"


def ratio(ours: float | None, peer: float | None) -> str:
    """ours ÷ peer, as '2.31×' ('–' when either is missing)."""
    if ours is None or not peer:
        return "–"
    return f"{ours / peer:.2f}×"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def time_decoding(
    decode: Callable[[Path, Path], Timed], source: Path, output: Path
) -> dict[str, float | None]:
    """Decode `source` with a whole command-line process, and once more its first line alone.

    Start-up (imports, model load) = the one-line run's wall time; "excluding start-up" is the
    full run's wall time minus that. The same definition for every system.
    """
    lines = read_text(source)
    one = output.with_name(output.name + ".first-line-src")
    one.write_text(lines[0] + "\n", encoding="utf-8")
    startup = decode(one, output.with_name(output.name + ".first-line")).wall
    full = decode(source, output)
    if full.returncode:
        raise RuntimeError(f"decoding into {output} failed (exit {full.returncode})")
    n = len(lines)
    work = full.wall - startup  # a noisy machine can make a tiny input's difference negative
    return {
        "wall": full.wall,
        "startup": startup,
        "sent_s": n / full.wall,
        "sent_s_excl": n / work if work > 0 else None,
        "peak_rss_mib": full.peak_rss_mib,
    }
