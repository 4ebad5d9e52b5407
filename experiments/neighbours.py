"""CPU-heavy neighbours for benchmarks that measure a busy machine: processes spinning on matrix products, as another
user or other trials would."""

from __future__ import annotations

import multiprocessing
import time
from contextlib import contextmanager
from typing import Any, Iterator

import torch


def _spin(stop: Any) -> None:
    torch.set_num_threads(1)
    a = torch.randn(256, 256)
    while not stop.is_set():
        a = torch.tanh(a @ a)


@contextmanager
def busy(count: int) -> Iterator[None]:
    """``count`` single-threaded spinning processes, busy before the block starts, stopped after it."""
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    neighbours = [context.Process(target=_spin, args=(stop,)) for _ in range(count)]
    for n in neighbours:
        n.start()
    time.sleep(1.0 if count else 0.0)
    try:
        yield
    finally:
        stop.set()
        for n in neighbours:
            n.join()
