"""Long work shows live progress on a terminal, and a plain line now and then elsewhere (logs, CI, pipes)."""

from __future__ import annotations

import io
import time

import pytest

from squeezer.compressors import progress
from squeezer.compressors.progress import Bar


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_a_bar_is_drawn_and_redrawn_in_place(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SQUEEZER_PROGRESS", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    screen = Terminal()
    with Bar("study", total=4, unit="trials", stream=screen) as bar:
        bar.update(1, note="distill epoch 3")
        time.sleep(0.6)  # redrawn at most twice a second
        bar.update(1)
    assert "\r" in screen.getvalue() and "2/4" in screen.getvalue() and "distill epoch 3" in screen.getvalue()


def test_elsewhere_a_plain_line_at_most_every_few_seconds_with_the_time_left(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SQUEEZER_PROGRESS", raising=False)
    log = io.StringIO()
    with Bar("study", total=4, unit="trials", initial=1, stream=log) as bar:
        bar.update(1)
        assert log.getvalue() == ""  # not a line per update
        monkeypatch.setattr(progress, "PLAIN_EVERY_S", 0.0)
        bar.update(1, note="2 running in other processes")
    [line] = log.getvalue().splitlines()
    assert line.startswith("study: 3/4 trials 2 running in other processes (~") and line.endswith(" left)")
    assert "\r" not in log.getvalue()


def test_the_user_can_ask_for_plain_lines_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SQUEEZER_PROGRESS", "plain")
    assert not progress.live(Terminal())
    monkeypatch.setenv("SQUEEZER_PROGRESS", "live")
    assert progress.live(io.StringIO())


@pytest.mark.parametrize(("seconds", "shown"), [(42, "42s"), (420, "7 min"), (7500, "2 h 05 min")])
def test_time_left_reads_naturally(seconds: float, shown: str) -> None:
    assert progress.duration(seconds) == shown
