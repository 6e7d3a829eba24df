"""The loops of one stage subscribe together (streams/runtime/supervisor.py StartTogether)."""

from __future__ import annotations

import threading
import time

from threatroute.streams.runtime.supervisor import StartTogether


class _Stage:
    name = "publish"


def _arrive(gate: StartTogether, left: list[float], timeout: float = 5.0) -> threading.Thread:
    def go() -> None:
        gate.ready(_Stage(), timeout)  # type: ignore[arg-type]
        left.append(time.monotonic())

    thread = threading.Thread(target=go)
    thread.start()
    return thread


def test_no_loop_subscribes_before_the_last_is_ready() -> None:
    gate, left = StartTogether(3, threading.Event()), []
    early = [_arrive(gate, left) for _ in range(2)]
    time.sleep(0.3)
    assert left == []  # two of three ready: both still wait
    last_ready = time.monotonic()
    early.append(_arrive(gate, left))
    for thread in early:
        thread.join(2)
    assert len(left) == 3
    assert all(at >= last_ready for at in left)


def test_a_loop_that_failed_to_start_does_not_hold_the_others() -> None:
    gate, left = StartTogether(2, threading.Event()), []
    waiting = _arrive(gate, left)
    time.sleep(0.2)
    gate.abandon()
    waiting.join(2)
    assert len(left) == 1


def test_stop_and_the_timeout_release_a_waiting_loop() -> None:
    stop = threading.Event()
    gate, left = StartTogether(2, stop), []
    waiting = _arrive(gate, left)
    stop.set()
    waiting.join(2)
    assert len(left) == 1

    gate, left = StartTogether(2, threading.Event()), []
    started = time.monotonic()
    _arrive(gate, left, timeout=0.3).join(2)
    assert len(left) == 1 and 0.3 <= left[0] - started < 1.5
