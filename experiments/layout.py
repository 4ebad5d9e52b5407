"""The layout, measured: modules per package and their lines, the largest modules, and the path of a config from
``run_study`` to its first trial — which Squeezer modules it visits, the distinct calls from one module into another,
and how often the kind of data is worked out (a call to a function deciding it: ``is_text``, ``is_table``, ...).

    python experiments/layout.py            # prints the tables, writes experiments/results/layout.json
    python experiments/layout.py --root /tmp/before --out before.json   # another checkout (its squeezer imported)
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"search": "squeezer.search", "spaces": "squeezer.spaces", "compressors": "squeezer.compressors"}
KIND_CHECKS = ("is_text", "is_table", "is_saved", "is_images", "is_listed", "find_images", "_data_kind")


def modules(root: Path) -> list[tuple[str, str, int]]:
    """(package, module path, lines) of every Python module of the product."""
    found = []
    for folder in PACKAGES:
        for path in sorted((root / folder).rglob("*.py")):
            package = str(path.parent.relative_to(root))
            found.append((package, str(path.relative_to(root)), len(path.read_text().splitlines())))
    return found


def trace_first_trial(root: Path) -> dict[str, Any]:
    """Run a one-trial digits study under a profiler, from ``run_study`` until the first trial starts
    (``trial.run.attempt``): the Squeezer modules visited, the distinct calls from one module into another (its
    arrows), and the calls that decide the kind of data."""
    from squeezer.search.config.experiment import load_config
    from squeezer.search.runner import run_study

    visited: dict[str, None] = {}
    arrows: Counter[tuple[str, str]] = Counter()
    kinds: Counter[str] = Counter()
    state = {"on": False, "done": False}

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event != "call" or state["done"]:
            return
        name = frame.f_globals.get("__name__", "")
        if frame.f_code.co_name == "run_study" and name.endswith("runner"):
            state["on"] = True
        if not state["on"] or not name.startswith("squeezer."):
            return
        if frame.f_code.co_name == "attempt" and name.endswith("trial.run"):
            state["done"] = True
            return
        if frame.f_code.co_name in KIND_CHECKS:
            kinds[frame.f_code.co_name] += 1
        visited[name] = None
        caller = frame.f_back.f_globals.get("__name__", "") if frame.f_back is not None else ""
        if caller.startswith("squeezer.") and caller != name:
            arrows[caller, name] += 1

    config = load_config(root / "experiments" / "digits.yaml")
    with tempfile.TemporaryDirectory() as tmp:
        sys.setprofile(profile)
        try:
            run_study(config, trials=1, storage=f"sqlite:///{tmp}/s.db", tracking_uri=f"sqlite:///{tmp}/m.db",
                      quiet=True)
        finally:
            sys.setprofile(None)
    return {"modules": len(visited), "arrows": len(arrows), "kind_checks": dict(kinds), "path": list(visited)}


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout measured")
    parser.add_argument("--out", type=Path, default=ROOT / "experiments" / "results" / "layout.json")
    args = parser.parse_args()
    if args.root != ROOT:  # import that checkout's squeezer, not the installed one
        shim = Path(tempfile.mkdtemp()) / "squeezer"
        shim.mkdir()
        for folder in PACKAGES:
            (shim / folder).symlink_to(args.root / folder)
        sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
        sys.path.insert(0, str(shim.parent))
    found = modules(args.root)
    per_package: dict[str, list[int]] = {}
    for package, _, lines in found:
        per_package.setdefault(package, []).append(lines)
    print("| package | modules | lines |\n|---|---:|---:|")
    for package, lines in sorted(per_package.items()):
        print(f"| {package} | {len(lines)} | {sum(lines):,} |")
    print(f"| all | {len(found)} | {sum(n for *_, n in found):,} |")
    largest = sorted(found, key=lambda f: -f[2])[:10]
    print("\n| largest modules | lines |\n|---|---:|")
    for _, path, lines in largest:
        print(f"| {path} | {lines} |")
    traced = trace_first_trial(args.root)
    print(f"\nrun_study to the first trial: {traced['modules']} modules, {traced['arrows']} distinct calls from one "
          f"module into another; the kind of data decided {sum(traced['kind_checks'].values())} time(s) "
          f"{traced['kind_checks'] or ''}")
    packages = {p: {"modules": len(v), "lines": sum(v)} for p, v in per_package.items()}
    args.out.write_text(json.dumps({"packages": packages, "largest": [{"module": p, "lines": n} for _, p, n in largest],
                                    "first_trial": traced}, indent=2) + "\n")


if __name__ == "__main__":
    main()
