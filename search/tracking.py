"""MLflow tracking: one parent run per study, one nested child run per trial, Pareto tags and artifacts."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Mapping

from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.tracking import MlflowClient

from squeezer.search.defaults import DEFAULT_TRACKING_URI  # noqa: F401  (re-exported)

STUDY_TAG = "squeezer.study"
ROLE_TAG = "squeezer.role"


class Tracker:
    """Writes a study to an MLflow tracking store through the client API (safe to use without a global run)."""

    def __init__(self, tracking_uri: str, experiment: str) -> None:
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
        return self.client.create_experiment(name, artifact_location=location)

    def study_run(self, study: str, config: Mapping[str, Any]) -> str:
        """The study's parent run: reopened when the study resumes, created otherwise."""
        runs = self.client.search_runs([self.experiment_id], max_results=1,
                                       filter_string=f"tags.`{STUDY_TAG}` = '{study}' and tags.`{ROLE_TAG}` = 'study'")
        if runs:
            self.client.update_run(runs[0].info.run_id, status="RUNNING")
            return runs[0].info.run_id
        run = self.client.create_run(self.experiment_id, run_name=study, tags={STUDY_TAG: study, ROLE_TAG: "study"})
        self.client.log_dict(run.info.run_id, dict(config), "config.yaml")
        return run.info.run_id

    def trial_run(self, parent: str, study: str, number: int, params: Mapping[str, Any]) -> str:
        """A nested child run holding the trial's flattened parameters."""
        tags = {"mlflow.parentRunId": parent, STUDY_TAG: study, ROLE_TAG: "trial", "squeezer.trial": str(number)}
        run = self.client.create_run(self.experiment_id, run_name=f"{study}-trial-{number}", tags=tags)
        self.client.log_batch(run.info.run_id, params=[Param(k, str(v)) for k, v in params.items()])
        return run.info.run_id

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int = 0) -> None:
        now = int(time.time() * 1000)
        self.client.log_batch(run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()])

    def end_trial(self, run_id: str, metrics: Mapping[str, float] | None, error: str | None = None,
                  status: str = "FINISHED", model_file: Path | None = None) -> None:
        """Close a trial run: its final metrics (and saved model), or the reason it failed."""
        if metrics:
            self.log_metrics(run_id, metrics)
        if model_file is not None and model_file.is_file():
            self.client.log_artifact(run_id, str(model_file))
        if error is not None:
            self.client.set_tag(run_id, "squeezer.error", error[:5000])
            status = "FAILED" if status == "FINISHED" else status
        self.client.set_terminated(run_id, status=status)

    def close_interrupted(self, study: str) -> int:
        """Mark trial runs left RUNNING by a killed study as KILLED; returns how many there were."""
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`{STUDY_TAG}` = '{study}' and tags.`{ROLE_TAG}` = 'trial' and status = 'RUNNING'")
        for run in runs:
            self.client.set_tag(run.info.run_id, "squeezer.error", "interrupted: the study process stopped")
            self.client.set_terminated(run.info.run_id, status=RunStatus.to_string(RunStatus.KILLED))
        return len(runs)

    def finish_study(self, parent: str, pareto_runs: Mapping[str, bool], table_csv: str, figure: Any) -> None:
        """Tag every trial run pareto=true/false and attach the front's table and plot to the parent run."""
        for run_id, on_front in pareto_runs.items():
            self.client.set_tag(run_id, "pareto", "true" if on_front else "false")
        self.client.log_text(parent, table_csv, "pareto.csv")
        if figure is not None:
            self.client.log_figure(parent, figure, "pareto.png")
        self.client.log_batch(parent, tags=[RunTag("squeezer.pareto_size", str(sum(pareto_runs.values())))])
        self.client.set_terminated(parent, status="FINISHED")
