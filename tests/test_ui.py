"""`squeezer ui` serves the study's runs on loopback (slow: the MLflow server takes ~15 s to start)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from squeezer.search.cli import main

from conftest import DIGITS_YAML


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_ui_shows_the_runs(tmp_path: Path) -> None:
    tracking = f"sqlite:///{tmp_path}/mlflow.db"
    assert main(["search", str(DIGITS_YAML), "--trials", "2", "--tracking-uri", tracking,
                 "--storage", f"sqlite:///{tmp_path}/optuna.db"]) == 0
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "squeezer.search.cli", "ui", "--tracking-uri", tracking,
                               "--port", str(port)], start_new_session=True, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        body = json.dumps({"experiment_ids": ["1"], "max_results": 10}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/api/2.0/mlflow/runs/search", data=body,
                                         headers={"Content-Type": "application/json"})
        deadline, answer = time.monotonic() + 90, None
        while answer is None and time.monotonic() < deadline:
            try:
                answer = json.load(urllib.request.urlopen(request, timeout=5))
            except OSError:
                time.sleep(1)
        assert answer is not None, "the MLflow UI did not come up within 90 s"
        assert len(answer["runs"]) == 3  # the study's parent run and its two trials
        printed = [server.stdout.readline() for _ in range(3)]
        page = f"http://127.0.0.1:{port}/#/experiments/1/runs?workflowType=machine_learning"
        assert printed[1].split() == ["squeezer-digits:", page]
        assert printed[2].split()[:3] == ["Pareto", "runs:", page + "&searchFilter=tags.pareto%20%3D%20%22true%22"]
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
