"""Installed, Squeezer is one import name: `squeezer` (its folders become squeezer.search/spaces/compressors)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from conftest import REPO


def test_the_wheel_installs_one_top_level_name(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(tmp_path), str(REPO)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("squeezer-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top_level == {"squeezer"}
    assert {"squeezer/search/cli.py", "squeezer/spaces/knobs.py", "squeezer/compressors/base.py"} <= set(names)
    sources = {str(p.relative_to(REPO)) for folder in ("search", "spaces", "compressors")
               for p in (REPO / folder).rglob("*.py")}
    assert {f"squeezer/{s}" for s in sources} <= set(names)  # every subpackage (backends, data, distill, ...)
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "squeezer = squeezer.search.cli:main" in entry_points


def test_the_editable_install_imports_the_same_way(tmp_path: Path) -> None:
    probe = ("import importlib.util, squeezer.search.cli, squeezer.compressors as c;"
             "print(squeezer.search.cli.__file__);"
             "print([n for n in ('search', 'spaces', 'compressors') if importlib.util.find_spec(n)]);"
             "print(c.available())")
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, check=True, capture_output=True,
                         text=True).stdout.splitlines()
    assert Path(out[0]) == REPO / "search" / "cli.py"  # the checkout's own files, not a copy
    assert out[1] == "[]"  # no generic top-level names leak into site-packages
    assert out[2] == "['distill', 'lowrank', 'prune', 'quantize']"
