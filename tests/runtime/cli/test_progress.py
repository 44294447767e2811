"""The status line of slow steps (runtime.cli.progress), on a stream standing in for stderr."""

from __future__ import annotations

import io
import threading
import time

from runtime.cli.progress import Status, Steps, elapsed_text

FAST = {"delay": 0.05, "interval": 0.02}


def test_a_step_under_the_delay_shows_nothing() -> None:
    for terminal in (True, False):
        out = io.StringIO()
        with Status("compiling quick.wat (wat)", stream=out, terminal=terminal, delay=0.5):
            pass
        assert out.getvalue() == ""


def test_off_a_terminal_a_slow_step_writes_one_plain_line() -> None:
    out = io.StringIO()
    with Status("compiling greet.go (go)", stream=out, terminal=False, **FAST) as status:
        time.sleep(0.2)
        status.update("compiling greet.go (go), still")
        time.sleep(0.1)
    assert out.getvalue() == "compiling greet.go (go)...\n"


def test_on_a_terminal_the_line_is_redrawn_with_the_time_then_erased() -> None:
    out = io.StringIO()
    with Status("waiting for t-1 (pending)", stream=out, terminal=True, **FAST) as status:
        time.sleep(0.15)
        status.update("waiting for t-1 (in_progress)")
        time.sleep(0.15)
    text = out.getvalue()
    draws = text.split("\r\033[K")[1:]
    assert len(draws) >= 4, text
    assert draws[0].endswith(" waiting for t-1 (pending) 0 s")
    assert draws[-2].endswith(" waiting for t-1 (in_progress) 0 s")
    assert draws[-1] == ""  # erased: the screen is as it was
    assert "\n" not in text


def test_disabled_status_writes_nothing() -> None:
    out = io.StringIO()
    with Status("compiling", stream=out, terminal=True, enabled=False, **FAST):
        time.sleep(0.15)
    assert out.getvalue() == ""


def test_parallel_steps_off_a_terminal_write_a_line_for_each_slow_one() -> None:
    out = io.StringIO()
    steps = Steps(stream=out, terminal=False)
    with steps:
        steps.start("a", "[1/3] compiling a.go (go)")
        steps.start("b", "[2/3] compiling b.wat (wat)")
        steps.finish("b")  # fast: no line
        time.sleep(1.2)
        steps.finish("a")
    assert out.getvalue() == "[1/3] compiling a.go (go)...\n"


def test_parallel_steps_on_a_terminal_share_one_line() -> None:
    out = io.StringIO()
    steps = Steps(stream=out, terminal=True)
    with steps:
        steps.start("a", "[1/2] compiling a.go (go)")
        steps.start("b", "[2/2] compiling b.c (zig)")
        time.sleep(1.3)
        steps.finish("b")
        time.sleep(0.3)
    text = out.getvalue()
    assert "[2/2] compiling b.c (zig) (+1 more) 1 s" in text
    assert text.split("\r\033[K")[-2].endswith("[1/2] compiling a.go (go) 1 s")
    assert text.endswith("\r\033[K") and "\n" not in text


def test_steps_may_be_reported_from_many_threads() -> None:
    out = io.StringIO()
    with Steps(stream=out, terminal=True) as steps:

        def one(i: int) -> None:
            steps.start(str(i), f"item {i}")
            steps.finish(str(i))

        threads = [threading.Thread(target=one, args=(i,)) for i in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert out.getvalue() == ""  # all were fast


def test_elapsed_text() -> None:
    assert elapsed_text(0.4) == "0 s"
    assert elapsed_text(59.9) == "59 s"
    assert elapsed_text(125) == "2 min 05 s"


def test_closing_twice_erases_once() -> None:
    out = io.StringIO()
    status = Status("preparing", stream=out, terminal=True, **FAST).__enter__()
    time.sleep(0.1)
    status.close()
    erased = out.getvalue()
    assert erased.endswith("\r\033[K")
    status.close()
    assert out.getvalue() == erased
