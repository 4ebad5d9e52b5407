"""What a study trains with on this machine: the CPU cores, shared out as torch threads among the trials that run at
once (more threads than cores only make them wait on each other), and the GPUs (``training.device``,
``training.precision``, ``measure.device``)."""

from __future__ import annotations

import os
import re
from typing import Any

import torch

from squeezer.compressors.device import Device
from squeezer.search.errors import ConfigError

DEVICE = re.compile(r"auto|cpu|cuda(:\d{1,3})?")
NO_GPU = ("torch sees no CUDA GPU on this machine (torch.cuda.is_available() is False: no NVIDIA driver, or a CPU "
          "build of torch)")


def cores() -> int:
    """The CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def threads(wanted: int | None, at_once: int) -> int:
    """Torch threads for one of ``at_once`` trials training side by side on this machine: ``wanted``
    (``training.threads``), or the cores shared out."""
    return wanted if wanted is not None else max(1, cores() // max(1, at_once))


def gpus() -> int:
    """The CUDA GPUs this process sees (``CUDA_VISIBLE_DEVICES`` decides which)."""
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def check_device(value: Any, key: str, auto: bool = True) -> str:
    """The spelling of a device setting: ``auto`` (CUDA when there is a GPU, else the CPU), ``cpu``, ``cuda`` or
    ``cuda:N``."""
    allowed = "auto, cpu, cuda or cuda:N" if auto else "cpu, cuda or cuda:N"
    if not isinstance(value, str) or not DEVICE.fullmatch(value) or (value == "auto" and not auto):
        raise ConfigError(key, f"must be {allowed}", value)
    return value


def resolve(value: str, key: str) -> torch.device:
    """The torch device ``value`` names on this machine; a GPU it does not have is a ``ConfigError``."""
    if value == "auto":
        return torch.device("cuda" if gpus() else "cpu")
    where = torch.device(value)
    if where.type == "cuda":
        count = gpus()
        if not count:
            raise ConfigError(key, f"needs a CUDA GPU, and {NO_GPU}; use auto or cpu", value)
        if where.index is not None and where.index >= count:
            raise ConfigError(key, f"names a GPU this machine does not have: it has {count} (cuda:0 to "
                              f"cuda:{count - 1})", value)
    return where


def training_device(device: str, precision: str) -> Device:
    """Where trials and the teacher train (``training.device``) in which precision (``training.precision``),
    checked against this machine."""
    where = resolve(device, "training.device")  # precision: checked with the settings (and by ``Device``)
    if precision == "bf16" and where.type == "cuda" and not torch.cuda.is_bf16_supported(including_emulation=False):
        raise ConfigError("training.precision", f"bf16 needs a GPU that computes in bfloat16 (compute capability 8.0 "
                          f"or newer, e.g. A100, H100); {torch.cuda.get_device_name(where)} does not: use fp16",
                          precision)
    return Device(where, precision)


def for_job(device: str, job: int) -> str:
    """The device setting of job ``job`` of a study's ``search.jobs``: with several GPUs and no GPU named, the jobs
    are spread over them round-robin (job 0, the study's own process, on cuda:0)."""
    count = gpus()
    return f"cuda:{job % count}" if device in ("auto", "cuda") and count > 1 else device


def describe(device: Device, threads_: int) -> str:
    """``cuda:0 (NVIDIA H200, 139 GiB), bf16`` or ``cpu (2 threads)``: where a study trains, for its first lines."""
    if device.where.type == "cuda":
        props = torch.cuda.get_device_properties(device.where)
        return f"{device.where} ({props.name}, {props.total_memory / 2**30:.0f} GiB), {device.precision}"
    return f"cpu ({threads_} torch threads), {device.precision}"
