"""MLflow tracking: one parent run per study, one nested child run per trial, Pareto tags and artifacts.

MLflow mirrors the study storage; it never decides whether a trial finished. Each trial costs a fixed handful of
round trips (create, params, one batch of metrics and curves, artifact, end), never one per epoch.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterable, Mapping

from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from squeezer.search.locking import sqlite_lock

STUDY_TAG = "squeezer.study"
ROLE_TAG = "squeezer.role"
TRIAL_TAG = "squeezer.trial"
ERROR_TAG = "squeezer.error"
_BATCH = 1000  # MLflow's limit of metrics per log_batch call

Curves = Iterable[tuple[int, Mapping[str, float]]]


class Tracker:
    """Writes a study to an MLflow tracking store through the client API (safe to use without a global run)."""

    def __init__(self, tracking_uri: str, experiment: str) -> None:
        with sqlite_lock(tracking_uri):
            self.client = MlflowClient(tracking_uri)
            self.experiment_id = self._experiment(tracking_uri, experiment)

    def _experiment(self, tracking_uri: str, name: str) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        # A local store keeps artifacts beside the database, not in whatever directory the command ran from.
        location = None
        if tracking_uri.startswith("sqlite:///"):
            location = (Path(tracking_uri.removeprefix("sqlite:///")).resolve().parent / "mlartifacts").as_uri()
        try:
            return self.client.create_experiment(name, artifact_location=location)
        except MlflowException:  # another process of the same study created it first
            return self.client.get_experiment_by_name(name).experiment_id

    def find_study_run(self, study: str) -> str | None:
        runs = self.client.search_runs([self.experiment_id], max_results=1,
                                       filter_string=f"tags.`{STUDY_TAG}` = '{study}' and tags.`{ROLE_TAG}` = 'study'")
        return runs[0].info.run_id if runs else None

    def create_study_run(self, study: str, config: Mapping[str, Any]) -> str:
        run = self.client.create_run(self.experiment_id, run_name=study, tags={STUDY_TAG: study, ROLE_TAG: "study"})
        self.client.log_dict(run.info.run_id, dict(config), "config.yaml")
        return run.info.run_id

    def reopen(self, run_id: str) -> None:
        self.client.update_run(run_id, status="RUNNING")

    def trial_run(self, parent: str, study: str, number: int, params: Mapping[str, Any],
                  tags: Mapping[str, str] | None = None) -> str:
        """A nested child run holding the trial's flattened parameters."""
        all_tags = {"mlflow.parentRunId": parent, STUDY_TAG: study, ROLE_TAG: "trial", TRIAL_TAG: str(number),
                    **(tags or {})}
        run = self.client.create_run(self.experiment_id, run_name=f"{study}-trial-{number}", tags=all_tags)
        self.client.log_batch(run.info.run_id, params=[Param(k, str(v)) for k, v in params.items()])
        return run.info.run_id

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int = 0) -> None:
        self.log_result(run_id, metrics, curves=(), model_file=None)

    def log_result(self, run_id: str, metrics: Mapping[str, float] | None, curves: Curves = (),
                   model_file: Path | None = None, error: str | None = None) -> None:
        """Everything a trial produced, in one batch (final metrics at step 0, curves at their epochs)."""
        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for step, values in curves for k, v in values.items()]
        batch += [Metric(k, float(v), now, 0) for k, v in (metrics or {}).items()]
        tags = [RunTag(ERROR_TAG, error[:5000])] if error else []
        for start in range(0, max(len(batch), 1), _BATCH):
            self.client.log_batch(run_id, metrics=batch[start:start + _BATCH], tags=tags if start == 0 else [])
        if model_file is not None and model_file.is_file():
            self.client.log_artifact(run_id, str(model_file))

    def end(self, run_id: str, status: str) -> None:
        """Close a run: FINISHED, FAILED or KILLED."""
        self.client.set_terminated(run_id, status=status)

    def trial_runs(self, study: str, status: str | None = None) -> list[Any]:
        """The study's trial runs (all pages), optionally only those with ``status`` (e.g. RUNNING)."""
        query = f"tags.`{STUDY_TAG}` = '{study}' and tags.`{ROLE_TAG}` = 'trial'"
        query += f" and status = '{status}'" if status else ""
        runs, token = [], None
        while True:
            page = self.client.search_runs([self.experiment_id], filter_string=query, max_results=1000,
                                           page_token=token)
            runs += list(page)
            token = page.token
            if not token:
                return runs

    def kill(self, run_id: str, reason: str) -> None:
        self.client.set_tag(run_id, ERROR_TAG, reason)
        self.end(run_id, RunStatus.to_string(RunStatus.KILLED))

    def finish_study(self, parent: str, study: str, members: set[int], table_csv: str, figure: Any,
                     summary: Mapping[str, float]) -> None:
        """Tag every trial run pareto=true/false and attach the front's table, plot and counts to the parent run.

        ``members`` are the trial numbers on the front; only a FINISHED run can be one (a trial that was interrupted
        and run again keeps its KILLED run beside the finished one).
        """
        pareto_runs = {r.info.run_id: r.info.status == "FINISHED" and int(r.data.tags[TRIAL_TAG]) in members
                       for r in self.trial_runs(study)}
        for run_id, on_front in pareto_runs.items():
            self.client.set_tag(run_id, "pareto", "true" if on_front else "false")
        self.client.log_text(parent, table_csv, "pareto.csv")
        if figure is not None:
            self.client.log_figure(parent, figure, "pareto.png")
        now = int(time.time() * 1000)
        self.client.log_batch(parent, metrics=[Metric(k, float(v), now, 0) for k, v in summary.items()],
                              tags=[RunTag("squeezer.pareto_size", str(sum(pareto_runs.values())))])
        self.end(parent, "FINISHED")
