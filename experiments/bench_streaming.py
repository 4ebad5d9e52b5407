"""A study on image data several times larger than the memory its process may use.

    python experiments/image_folders.py data/fashion_mnist_128 --side 128     # once: 70k PNGs, 128x128
    python experiments/bench_streaming.py [--data data/fashion_mnist_128] [--cap-gib 1.5] [--control]

Runs ``squeezer search`` on the image folder inside a Linux memory cgroup (v1 or v2; needs root) that caps the
process and its children at ``--cap-gib`` (swap included), from a cold cache: the folder is decoded by DataLoader
workers into a uint8 array on disk, split into float32 files, and memory-mapped. Records the cgroup's peak memory
(page cache included), the processes' peak RSS, whether the kernel had to kill anything, the data's size as the
float32 arrays an in-memory study would hold, the trials, and the time. ``--control`` also runs the same images
as an .npz (read into memory) under the same cap. Writes results/streaming.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

HERE = Path(__file__).resolve().parent
CONFIG = {
    "seed": 0,
    "teacher": {"family": "cnn", "arch": {"depth": 4, "channels": 8, "hidden": 64}, "epochs": 1, "lr": 0.002},
    "student": {"family": "cnn", "depth": 4, "channels": {"int": [2, 4]}, "hidden": 32},
    "pipeline": [{"distill": {"epochs": 1, "lr": 0.002}}, {"quantize": {"bits": 8}}],
    "search": {"sampler": "random", "trials": 2, "scheduler": "none"},
    "measure": {"runtime": "onnxruntime", "threads": 1, "repeats": 20, "batch": 64},
    "training": {"batch_size": 128},
}


class Cgroup:
    """A memory cgroup capping what is run in it (cgroup v2, else v1's memory controller)."""

    def __init__(self, cap: int) -> None:
        name = f"squeezer-bench-{os.getpid()}"
        v2 = Path("/sys/fs/cgroup/cgroup.controllers")
        self.v2 = v2.is_file() and "memory" in v2.read_text()
        self.path = Path("/sys/fs/cgroup" if self.v2 else "/sys/fs/cgroup/memory") / name
        self.path.mkdir()
        if self.v2:
            (self.path / "memory.max").write_text(str(cap))
            (self.path / "memory.swap.max").write_text("0")
        else:
            (self.path / "memory.limit_in_bytes").write_text(str(cap))
            if (self.path / "memory.memsw.limit_in_bytes").exists():
                (self.path / "memory.memsw.limit_in_bytes").write_text(str(cap))

    def enter(self) -> None:
        """Move the calling process in (run in the child before it executes the command)."""
        (self.path / "cgroup.procs").write_text(str(os.getpid()))

    def peak(self) -> int:
        return int((self.path / ("memory.peak" if self.v2 else "memory.max_usage_in_bytes")).read_text())

    def kills(self) -> int:
        if self.v2:
            events = dict(line.split() for line in (self.path / "memory.events").read_text().splitlines())
            return int(events.get("oom_kill", 0))
        control = dict(line.split() for line in (self.path / "memory.oom_control").read_text().splitlines())
        return int(control.get("oom_kill", 0))

    def remove(self) -> None:
        self.path.rmdir()


def run(name: str, data: dict, cap: int, work: Path) -> dict:
    """One study in a fresh cgroup and a cold cache; what it cost."""
    (work / name).mkdir()
    config = work / name / "experiment.yaml"
    config.write_text(yaml.safe_dump({"name": name, "data": data, **CONFIG}))
    env = {**os.environ, "SQUEEZER_CACHE": str(work / name / "cache")}
    group = Cgroup(cap)
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.monotonic()
    try:
        done = subprocess.run([sys.executable, "-m", "squeezer.search.cli", "search", str(config),
                               "--storage", f"sqlite:///{work / name / 'squeezer.db'}",
                               "--tracking-uri", f"sqlite:///{work / name / 'mlflow.db'}"],
                              env=env, preexec_fn=group.enter, capture_output=True, text=True)
        seconds = time.monotonic() - started
        peak, kills = group.peak(), group.kills()
    finally:
        group.remove()
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    lines = [line for line in done.stdout.splitlines() if line.startswith(("[trial", "teacher:"))]
    print(f"{name}: exit {done.returncode} in {seconds:.0f} s; cgroup peak {peak / 2**30:.2f} GiB", flush=True)
    return {"exit": done.returncode, "seconds": round(seconds, 1), "cgroup_peak_bytes": peak,
            "peak_rss_bytes": rss * 1024 if rss > before else None, "oom_kills": kills, "lines": lines,
            "stderr_tail": done.stderr.strip().splitlines()[-8:]}


def float32_bytes(data_dir: Path, val_fraction: float) -> tuple[int, tuple[int, ...]]:
    """What an in-memory study holds: every image as float32 once, plus the raw validation and test copies."""
    from squeezer.search.data.folders import scan

    train, test = scan(data_dir / "train", "train"), scan(data_dir / "test", "test")
    shape = (train.channels, *train.size)
    per_image = 4 * int(np.prod(shape))
    raw = int(round(val_fraction * len(train.files))) + len(test.files)
    return per_image * (len(train.files) + len(test.files) + raw), shape


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=HERE.parent / "data" / "fashion_mnist_128")
    parser.add_argument("--cap-gib", type=float, default=1.5)
    parser.add_argument("--control", action="store_true", help="also run the same images as an .npz, in memory")
    args = parser.parse_args()
    if not (args.data / "train").is_dir():
        print(f"no image folder at {args.data}: python experiments/image_folders.py {args.data} --side 128")
        return 2
    cap = int(args.cap_gib * 2**30)
    data = {"path": str(args.data / "train"), "test_path": str(args.data / "test"), "val_fraction": 0.1}
    size, shape = float32_bytes(args.data, 0.1)
    results = {"cap_bytes": cap, "data_float32_bytes": size, "image_shape": list(shape),
               "cpu_count": os.cpu_count(), "config": CONFIG}
    work = Path(tempfile.mkdtemp(prefix="squeezer-stream-"))
    try:
        results["folder"] = run("stream_folder", data, cap, work)
        if args.control:
            from squeezer.search.data.folders import decode, scan

            arrays = {}
            for part in ("train", "test"):
                folder = scan(args.data / part, part)
                pixels, labels = decode(folder, part), folder.labels
                arrays[part] = work / f"{part}.npz"
                # compressed, so read into memory (a stored .npz this large is memory-mapped like the folder)
                np.savez_compressed(arrays[part], X=np.asarray(pixels, dtype=np.float32), y=labels)
            results["memory"] = run("stream_memory", {**data, "path": str(arrays["train"]),
                                                      "test_path": str(arrays["test"])}, cap, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    table = render(results)
    print(table)
    out = HERE / "results" / "streaming"
    out.with_suffix(".json").write_text(json.dumps(results, indent=2))
    out.with_suffix(".md").write_text(table + "\n")
    return 0


def render(r: dict) -> str:
    gib = 2**30
    lines = [f"Image data: {r['image_shape']} per image; as float32 arrays {r['data_float32_bytes'] / gib:.2f} GiB "
             f"= {r['data_float32_bytes'] / r['cap_bytes']:.1f}x the cap of {r['cap_bytes'] / gib:.2f} GiB "
             f"({r['cpu_count']} CPUs).", "",
             "| data read as | exit | time | cgroup peak (page cache included) | largest process RSS (mapped file "
             "pages included) | OOM kills |",
             "|---|---:|---:|---:|---:|---:|"]
    for key, label in (("folder", "image folder (memory-mapped)"), ("memory", ".npz (in memory)")):
        if key in r:
            x = r[key]
            rss = "" if x["peak_rss_bytes"] is None else f"{x['peak_rss_bytes'] / gib:.2f} GiB"
            lines.append(f"| {label} | {x['exit']} | {x['seconds'] / 60:.1f} min | {x['cgroup_peak_bytes'] / gib:.2f} "
                         f"GiB | {rss} | {x['oom_kills']} |")
    lines += ["", "Trials of the memory-mapped study:", ""] + [f"    {line}" for line in r["folder"]["lines"]]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
