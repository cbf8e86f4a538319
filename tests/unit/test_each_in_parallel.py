"""storage.each_in_parallel: results in order, errors handed back per item, bounded lookahead."""

from __future__ import annotations

import threading
import time

from nem12.pipeline.storage import each_in_parallel


def test_results_come_in_order_with_each_items_error():
    def work(n: int) -> int:
        time.sleep(0.001 * (10 - n % 10))  # later items finish first
        if n == 7:
            raise ValueError("seven")
        return n * n

    got = list(each_in_parallel(work, range(20), workers=4))
    assert [item for item, _, _ in got] == list(range(20))
    assert [result for item, result, _ in got if item != 7] == [n * n for n in range(20) if n != 7]
    _, result, error = got[7]
    assert result is None and isinstance(error, ValueError) and str(error) == "seven"


def test_no_more_than_two_rounds_run_ahead_of_the_caller():
    started: list[int] = []
    lock = threading.Lock()

    def work(n: int) -> int:
        with lock:
            started.append(n)
        return n

    ahead = []
    for item, _, _ in each_in_parallel(work, range(100), workers=4):
        time.sleep(0.002)  # a slow caller (the database work)
        with lock:
            ahead.append(len(started) - item - 1)
    assert max(ahead) <= 2 * 4


def test_one_worker_runs_in_the_callers_thread():
    threads = {
        name
        for _, name, _ in each_in_parallel(
            lambda _: threading.current_thread().name, [1, 2], workers=1
        )
    }
    assert threads == {threading.current_thread().name}
