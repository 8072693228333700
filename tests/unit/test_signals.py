"""GracefulStop: the first SIGINT or SIGTERM is a request, acknowledged at once; a second SIGINT
raises KeyboardInterrupt, or in the `seq2seq` process exits at once; the handlers before it come
back when it ends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from seq2seq.training.signals import GracefulStop
from tests.conftest import run_cli


@pytest.mark.parametrize("first", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_first_signal_is_a_request_and_a_second_ctrl_c_leaves(
    first: signal.Signals, capfd: pytest.CaptureFixture[str]
) -> None:
    """The request is recorded and said on stderr; the loop goes on until it looks."""
    before = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    with GracefulStop() as stop:
        os.kill(os.getpid(), first)  # Python runs the handler before the next line
        assert stop.requested == first.name
        said = capfd.readouterr().err
        assert said.startswith(f"{first.name}: stopping after this update")
        assert ("Ctrl-C again" in said) == (first == signal.SIGINT)  # no hint to a supervisor
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert {signum: signal.getsignal(signum) for signum in before} == before


def test_a_closed_stderr_does_not_lose_the_request() -> None:
    """The acknowledgement is best effort: with fd 2 closed the request still stands."""
    saved = os.dup(2)
    try:
        os.close(2)
        with GracefulStop() as stop:
            os.kill(os.getpid(), signal.SIGINT)
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    assert stop.requested == "SIGINT"


def _run_python(code: str) -> subprocess.CompletedProcess[str]:
    """`code` in a fresh interpreter (a second Ctrl-C there ends the process)."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60
    )


def test_in_the_command_a_second_ctrl_c_exits_at_once() -> None:
    """As the `seq2seq` process, the second Ctrl-C during training ends it there and then,
    code 130, where a KeyboardInterrupt could be swallowed by a weakref callback."""
    done = _run_python(
        """
        import os, signal
        from seq2seq.training.signals import GracefulStop, command_interrupts
        command_interrupts()
        with GracefulStop():
            os.kill(os.getpid(), signal.SIGINT)
            print("first recorded", flush=True)
            os.kill(os.getpid(), signal.SIGINT)
            print("still running")
        """
    )
    assert done.returncode == 130, done.stderr
    assert done.stdout == "first recorded\n"
    assert "stopped at once; the last complete checkpoint is kept" in done.stderr
    assert "Traceback" not in done.stderr


def test_in_the_command_ctrl_c_interrupts_once_then_exits() -> None:
    """Outside training the first Ctrl-C is a KeyboardInterrupt (the command reports it); a
    second one, or any once the command is ending, exits at once without a traceback."""
    done = _run_python(
        """
        import os, signal
        from seq2seq.training.signals import command_ending, command_interrupts
        command_interrupts()
        try:
            os.kill(os.getpid(), signal.SIGINT)
        except KeyboardInterrupt:
            print("first raised", flush=True)
        os.kill(os.getpid(), signal.SIGINT)
        print("still running")
        """
    )
    assert (done.returncode, done.stdout) == (130, "first raised\n"), done.stderr
    ending = _run_python(
        """
        import os, signal
        from seq2seq.training.signals import command_ending, command_interrupts
        command_interrupts()
        command_ending()
        os.kill(os.getpid(), signal.SIGINT)
        print("still running")
        """
    )
    assert (ending.returncode, ending.stdout) == (130, ""), ending.stderr
    assert ending.stderr == "interrupted\n"


def test_ctrl_c_while_an_ending_is_reported_is_code_130(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Ctrl-C that lands while the CLI reports how a command ended (here a missing run dir)
    ends the process with code 130, not a KeyboardInterrupt traceback."""
    import seq2seq.cli as cli_module

    def interrupted(*_: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_module, "_report", interrupted)
    code, _, _ = run_cli(["translate", str(tmp_path / "missing")], capsys)
    assert code == 130


def test_ctrl_c_inside_click_says_interrupted(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """click turns a KeyboardInterrupt into its Abort; the message still says what happened."""
    from seq2seq import registry

    def interrupted() -> list[str]:
        raise KeyboardInterrupt

    monkeypatch.setattr(registry, "plugin_problems", interrupted)  # runs inside click
    code, _, err = run_cli(["components"], capsys)
    assert code == 130
    assert err.strip().splitlines()[-1] == "interrupted"


def test_a_repeated_sigterm_is_acknowledged_once_without_a_ctrl_c_hint(
    capfd: pytest.CaptureFixture[str],
) -> None:
    """A supervisor's SIGTERM gets no Ctrl-C advice, and repeating it says nothing more."""
    with GracefulStop() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)
    said = capfd.readouterr().err
    assert stop.requested == "SIGTERM"
    assert said.count("SIGTERM: stopping after this update") == 1
    assert "Ctrl-C" not in said


def test_under_torchrun_only_rank_0_acknowledges(
    capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every rank is signalled by the launcher: one line, from rank 0, without the Ctrl-C hint
    (the launcher, not the ranks, gets the second Ctrl-C)."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    for rank in ("1", "0"):
        monkeypatch.setenv("RANK", rank)
        with GracefulStop() as stop:
            os.kill(os.getpid(), signal.SIGINT)
        assert stop.requested == "SIGINT"
    said = capfd.readouterr().err
    assert said.count("SIGINT: stopping after this update with a checkpoint\n") == 1
    assert "Ctrl-C again" not in said
