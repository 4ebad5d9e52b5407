"""What a study trains with on this machine: the CPU cores, shared out as torch threads among the trials that run at
once (more threads than cores only make them wait on each other)."""

from __future__ import annotations

import os


def cores() -> int:
    """The CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def threads(wanted: int | None, at_once: int) -> int:
    """Torch threads for one of ``at_once`` trials training side by side on this machine: ``wanted``
    (``training.threads``), or the cores shared out."""
    return wanted if wanted is not None else max(1, cores() // max(1, at_once))
