"""GracefulStop: the first SIGINT or SIGTERM is a request, acknowledged at once; a second SIGINT
raises KeyboardInterrupt; the handlers before it come back when it ends."""

from __future__ import annotations

import os
import signal

import pytest

from seq2seq.training.signals import GracefulStop


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
        assert "Ctrl-C again" in said
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert {signum: signal.getsignal(signum) for signum in before} == before


def test_a_second_sigterm_is_only_recorded() -> None:
    """SIGTERM again (a supervisor repeating itself) waits for the save like the first."""
    with GracefulStop() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)
    assert stop.requested == "SIGTERM"


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
