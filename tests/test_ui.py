"""`squeezer ui` serves the study's runs on loopback, and a user sees them in a browser (slow: the MLflow server
takes ~15 s to start; the browser is Debian's headless chromium, which .ci/run installs)."""

from __future__ import annotations

import json
import os
import shutil
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


def browse(url: str, screenshot: Path, budget: int = 20000) -> str:
    """The page's DOM once its scripts have run, as headless chromium renders it; a screenshot beside."""
    browser = shutil.which("chromium")
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: .ci/run installs Debian's chromium for this test")
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    common = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1600,1200",
              f"--virtual-time-budget={budget}"]
    subprocess.run([*common, f"--screenshot={screenshot}", url], capture_output=True, timeout=120, check=True)
    return subprocess.run([*common, "--dump-dom", url], capture_output=True, text=True, timeout=120,
                          check=True).stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_ui_shows_the_runs(tmp_path: Path) -> None:
    tracking = f"sqlite:///{tmp_path}/mlflow.db"
    assert main(["search", str(DIGITS_YAML), "--trials", "3", "--tracking-uri", tracking,
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
        assert len(answer["runs"]) == 5  # the study's parent run, its teacher and its three trials
        printed = [server.stdout.readline().split() for _ in range(4)]
        page = f"http://127.0.0.1:{port}/#/experiments/1/runs?workflowType=machine_learning"
        assert printed[1] == ["squeezer-digits:", page]
        assert printed[2][:4] == ["study", "digits,", "Pareto", "front:"] and printed[3][:2] == ["as", "charts:"]
        view, charts = printed[2][4], printed[3][2]
        assert view == f"{page}&viewStateShareKey=squeezer-digits" and charts == f"{view}&compareRunsMode=CHART"
        # the printed view lists exactly the Pareto trials and the teacher, by name, with the metrics as columns
        dom = browse(view, tmp_path / "pareto-runs.png")
        trials = [r for r in answer["runs"] if r["data"].get("tags") and {"key": "squeezer.role", "value": "trial"}
                  in r["data"]["tags"]]
        on_front = {r["info"]["run_name"]: {"key": "pareto", "value": "true"} in r["data"]["tags"] for r in trials}
        assert any(on_front.values())
        assert all((name.replace("%", "") in dom.replace("%", "")) == shown for name, shown in on_front.items())
        assert ">teacher<" in dom
        for column in ("accuracy", "test_accuracy", "size_bytes", "latency_ms", "recommended"):
            assert f'title="{column}"' in dom or f">{column}<" in dom, column
        # its charts: accuracy against size and against latency, one point per member and one for the teacher
        dom = browse(charts, tmp_path / "pareto-charts.png", budget=40000)
        assert dom.count("js-plotly-plot") == 2
        assert dom.count("point plotly-customdata") == 2 * (sum(on_front.values()) + 1)
        for axis in ("size_bytes", "latency_ms"):
            assert f'data-unformatted="{axis}"' in dom, axis
        trial = next(r for r in answer["runs"] if {"key": "pareto", "value": "true"} in r["data"].get("tags", []))
        run_page = f"http://127.0.0.1:{port}/#/experiments/1/runs/{trial['info']['run_id']}?workflowType=machine_learning"
        dom = browse(run_page, tmp_path / "trial-run.png")
        assert trial["info"]["run_name"].replace("%", "") in dom.replace("%", "")  # the recipe names the run
        assert 'title="pareto">pareto</span>' in dom and 'title="true">: true</span>' in dom  # its tag
        accuracy = next(m["value"] for m in trial["data"]["metrics"] if m["key"] == "accuracy")
        assert str(accuracy)[:8] in dom  # its metrics
        keep = os.environ.get("SQUEEZER_SCREENSHOTS")
        if keep:
            Path(keep).mkdir(parents=True, exist_ok=True)
            (Path(keep) / "mlflow_ui_trial_run.png").write_bytes((tmp_path / "trial-run.png").read_bytes())
            for name in ("pareto-runs", "pareto-charts"):
                shot = f"mlflow_ui_{name.replace('-', '_')}.png"
                (Path(keep) / shot).write_bytes((tmp_path / f"{name}.png").read_bytes())
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
