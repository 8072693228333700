"""Faults at a command's edges: closed stdin, readers that leave, full disks and devices,
named pipes (`translate`, `score` and the rest run as child processes)."""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pytest

from tests.integration.test_faults import ENV, SEQ2SEQ, shell


def test_closed_stdin_is_one_message(trained) -> None:
    """`seq2seq translate RUN <&-`: a message, not a crash."""
    run_dir, _ = trained
    proc = shell(f'"$0" -m seq2seq translate "{run_dir}" <&-')
    assert proc.returncode == 1, proc.stderr
    assert "standard input is closed" in proc.stderr and "Traceback" not in proc.stderr


def test_broken_output_pipe_stops_quietly(trained, tmp_path) -> None:
    """`seq2seq translate ... | head -1`: one line out; the writer stops with one line on
    stderr and exit 141 (a writer killed by SIGPIPE), not with a traceback."""
    run_dir, _ = trained
    source = tmp_path / "in.txt"
    source.write_text("1 2 3\n" * 3000, encoding="utf-8")
    script = f'"$0" -m seq2seq -q translate "{run_dir}" -i "{source}" | head -1; ' + (
        'echo "status ${PIPESTATUS[0]}" >&2'
    )
    proc = shell(script)
    assert proc.stdout.count("\n") == 1
    message, status = proc.stderr.strip().split("\n")
    assert message.startswith("stopped: the reader closed the output after"), proc.stderr
    assert status == "status 141"


def test_output_to_a_device_or_pipe_is_written_not_replaced(trained, tmp_path) -> None:
    """`-o /dev/null` or `-o FIFO` writes into it; renaming over it would destroy the device."""
    run_dir, _ = trained
    source = tmp_path / "in.txt"
    source.write_text("1 2 3\n4 5\n", encoding="utf-8")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    proc = subprocess.Popen(
        [*SEQ2SEQ, "-q", "translate", str(run_dir), "-i", str(source), "-o", str(fifo)],
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    with open(fifo, encoding="utf-8") as reader:
        lines = reader.read().splitlines()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert len(lines) == 2
    assert fifo.is_fifo()


def test_input_from_a_named_pipe_is_streamed(trained, tmp_path) -> None:
    """`-i <(zcat f.gz)`: a named pipe can be read only once; it is translated, not refused
    and not drained by a line count first."""
    run_dir, _ = trained
    source, out = tmp_path / "source.txt", tmp_path / "out.txt"
    source.write_text("1 2 3\n4 5\n6\n", encoding="utf-8")
    script = f'"$0" -m seq2seq -q translate "{run_dir}" -i <(cat "{source}") -o "{out}"'
    proc = shell(script)
    assert proc.returncode == 0, proc.stderr
    expected = shell(f'"$0" -m seq2seq -q translate "{run_dir}" -i "{source}"').stdout
    assert out.read_text(encoding="utf-8") == expected and expected.count("\n") == 3


@pytest.mark.parametrize("argv", [["components"], ["--version"], ["--help"]])
def test_every_command_stops_with_141_on_a_closed_pipe(argv) -> None:
    """Output to a pipe whose reader has gone: one "stopped" line and exit 141, like the
    writer in `seq2seq components | head -1` (click alone would exit 1 without a word)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = subprocess.run(
            [*SEQ2SEQ, *argv],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            env=ENV,
            timeout=60,
        )
    finally:
        os.close(write_end)
    assert proc.returncode == 141, proc.stderr
    assert proc.stderr == "stopped: the reader closed the output\n"


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_full_output_device_is_one_message(trained, tmp_path) -> None:
    """Output that cannot be written (`-o /dev/full`, or stdout on a full disk) is one message
    naming it and exit 1; it used to be an "internal error"."""
    run_dir, _ = trained
    source = tmp_path / "in.txt"
    source.write_text("1 2 3\n4 5\n", encoding="utf-8")
    translate = f'"$0" -m seq2seq -q translate "{run_dir}" -i "{source}"'
    for redirect, named in (("-o /dev/full", "/dev/full"), ("> /dev/full", "standard output")):
        proc = shell(f"{translate} {redirect}")
        assert proc.returncode == 1, proc.stderr
        assert proc.stderr == f"error: cannot write {named}: No space left on device\n"


def test_output_file_on_a_full_disk_is_not_left_behind(tmp_path, monkeypatch) -> None:
    """ENOSPC when the last buffered lines reach the disk: a message naming the file, and
    neither the file nor its temporary remains."""
    import io

    from seq2seq.cli import options

    class FullDisk(io.StringIO):
        def close(self) -> None:
            if not self.closed:
                super().close()
                raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(options, "open", lambda *args, **kwargs: FullDisk(), raising=False)
    target = tmp_path / "out.txt"
    full = pytest.raises(options.Seq2SeqError, match="cannot write .*out.txt: No space left")
    with full, options.output_file(str(target)) as out:
        out.write("a line\n")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_any_command_on_a_full_output_is_one_message(tmp_path) -> None:
    """`seq2seq score ... > /dev/full` (or any command whose output finds no room): one message
    and exit 1, not an internal error."""
    text = tmp_path / "hyp.txt"
    text.write_text("a small test\n", encoding="utf-8")
    score = f'"$0" -m seq2seq score --hyp "{text}" --ref "{text}" --metric chrf > /dev/full'
    proc = shell(score)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr == "error: cannot write the output: No space left on device\n"
