"""MLflow tracking: one parent run per study, one nested child run per trial, Pareto tags and artifacts.

MLflow mirrors the study storage; it never decides whether a trial finished. A trial's writes (create, params, one
batch of metrics and curves, artifact, end; never one per epoch) go through one writer thread in order, so trials do
not wait for the tracking store. Reading methods flush the queue first. Writes lost to a crash are redone from the
study storage on resume (``Session.reconcile``).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Union

import logging

from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from squeezer.compressors.progress import note
from squeezer.search.locking import create_once, local_path, store_lock

STUDY_TAG = "squeezer.study"
ROLE_TAG = "squeezer.role"
TRIAL_TAG = "squeezer.trial"
ERROR_TAG = "squeezer.error"
KIND_TAG, KIND = "mlflow.experimentKind", "custom_model_development"
_BATCH = 1000  # MLflow's limit of metrics per log_batch call

Curves = Iterable[tuple[int, Mapping[str, float]]]
RunId = Union[str, "Future[str]"]  # a run id, or the promise of one from a queued ``trial_run``


def resolve(run_id: RunId) -> str:
    """The run id, once the queued run exists."""
    return run_id.result() if isinstance(run_id, Future) else run_id


def created(run_id: RunId) -> str | None:
    """The run id once the queued run exists; None if creating it failed (``flush`` reports such failures)."""
    return None if isinstance(run_id, Future) and run_id.exception() is not None else resolve(run_id)


def _artifact_root(database: Path) -> str:
    """A local store keeps artifacts beside the database, not in whatever directory the command ran from."""
    return (database.resolve().parent / "mlartifacts").as_uri()


def _create_mlflow_sqlite(path: Path) -> None:
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    SqlAlchemyStore(f"sqlite:///{path.resolve()}", _artifact_root(path)).engine.dispose()


# MLflow announces at INFO that it creates and upgrades its tables: nothing for a user to act on.
logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)


class Tracker:
    """Writes a study to an MLflow tracking store through the client API (safe to use without a global run)."""

    def __init__(self, tracking_uri: str, experiment: str) -> None:
        # artifact downloads (the front's test re-evaluation) would each draw a progress bar on the user's terminal
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        database = local_path(tracking_uri) if tracking_uri.startswith("sqlite:///") else None
        with store_lock(tracking_uri):
            if database is not None:
                create_once(database, _create_mlflow_sqlite)
            self.client, self.tracking_uri = MlflowClient(tracking_uri), tracking_uri
            self.experiment_id = self._experiment(experiment, database)
            if database is not None:  # readers stop blocking the writer; the mode stays with the file
                with sqlite3.connect(database) as connection:
                    connection.execute("PRAGMA journal_mode=WAL")
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="squeezer-mlflow")
        self._queued: list[Future[Any]] = []
        self._staging = Path(tempfile.mkdtemp(prefix="squeezer-mlflow-"))

    def _defer(self, write: Callable[..., Any], *args: Any, **kwargs: Any) -> Future[Any]:
        future = self._writer.submit(write, *args, **kwargs)
        self._queued.append(future)
        return future

    def flush(self) -> None:
        """Wait for every queued write; a failed write is reported once (the storage still has the trial)."""
        queued, self._queued = self._queued, []
        errors = [f.exception() for f in queued if f.exception() is not None]
        if errors:
            note(f"squeezer: warning: {len(errors)} MLflow write(s) failed; the study storage keeps the results and "
                 f"the next resume reconciles MLflow. First: {errors[0]!r}")

    def close(self) -> None:
        self.flush()
        self._writer.shutdown()
        shutil.rmtree(self._staging, ignore_errors=True)

    def _experiment(self, name: str, database: Path | None) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            if found.tags.get(KIND_TAG) != KIND:  # made by an older Squeezer: open it on the runs table too
                self.client.set_experiment_tag(found.experiment_id, KIND_TAG, KIND)
            return found.experiment_id
        location = None if database is None else _artifact_root(database)
        try:
            # the kind makes the MLflow UI open the experiment on its runs table, not its GenAI views
            return self.client.create_experiment(name, artifact_location=location, tags={KIND_TAG: KIND})
        except MlflowException:  # another process of the same study created it first
            found = self.client.get_experiment_by_name(name)
            if found is None:
                raise
            return found.experiment_id

    def find_study_run(self, study: str) -> str | None:
        self.flush()
        runs = self.client.search_runs([self.experiment_id], max_results=1,
                                       filter_string=f"tags.`{STUDY_TAG}` = '{study}' and tags.`{ROLE_TAG}` = 'study'")
        return runs[0].info.run_id if runs else None

    def create_study_run(self, study: str, config: Mapping[str, Any]) -> str:
        run = self.client.create_run(self.experiment_id, run_name=study, tags={STUDY_TAG: study, ROLE_TAG: "study"})
        self.client.log_dict(run.info.run_id, dict(config), "config.yaml")
        return run.info.run_id

    def teacher_run(self, parent: str, study: str, metrics: Mapping[str, float]) -> str:
        """A child run holding the teacher's metrics under the trials' names, tagged ``pareto: reference``: the
        reference row and point beside the Pareto members in the UI's table and charts."""
        tags = {"mlflow.parentRunId": parent, STUDY_TAG: study, ROLE_TAG: "teacher", "pareto": "reference"}
        run = self.client.create_run(self.experiment_id, run_name="teacher", tags=tags)
        self.log_result(run.info.run_id, metrics)
        self.end(run.info.run_id, "FINISHED")
        return run.info.run_id

    def tag_experiment(self, key: str, value: str) -> None:
        """A tag of the study's experiment (e.g. the review view the MLflow UI restores: ``review.view_tag``)."""
        self.client.set_experiment_tag(self.experiment_id, key, value)

    def reopen(self, run_id: str) -> None:
        self.client.update_run(run_id, status="RUNNING")

    def trial_run(self, parent: str, study: str, number: int, params: Mapping[str, Any],
                  tags: Mapping[str, str] | None = None, name: str | None = None) -> Future[str]:
        """A nested child run holding the trial's flattened parameters (queued: returns the future run id)."""
        all_tags = {"mlflow.parentRunId": parent, STUDY_TAG: study, ROLE_TAG: "trial", TRIAL_TAG: str(number),
                    **(tags or {})}
        return self._defer(self._trial_run, name or f"{study}-trial-{number}", all_tags, dict(params))

    def _trial_run(self, name: str, tags: dict[str, str], params: dict[str, Any]) -> str:
        run = self.client.create_run(self.experiment_id, run_name=name, tags=tags)
        self.client.log_batch(run.info.run_id, params=[Param(k, str(v)) for k, v in params.items()])
        return run.info.run_id

    def log_metrics(self, run_id: RunId, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Queued; at ``step`` (a point of a metric's history), else as final values at step 0."""
        if step is None:
            self.log_result(run_id, metrics)
        else:
            self.log_result(run_id, None, [(step, metrics)])

    def artifacts(self, run_id: str | None, into: Path) -> Path | None:
        """Download the files of run ``run_id`` into ``into``; None if there is no run or it has no files."""
        if run_id is None or not self.client.list_artifacts(run_id):
            return None
        return Path(self.client.download_artifacts(run_id, "", str(into)))

    def log_onnx_model(self, parent: str, run_id: str, onnx_file: Path, name: str, example: Any, outputs: Any,
                       params: Mapping[str, Any], metadata: Mapping[str, Any]) -> str:
        """Log an ONNX file as an MLflow model of the trial run ``run_id`` (so its metrics are the trial's), with the
        trial's recipe as params, a signature from an input ``example`` (raw input, as the user feeds it) and its
        ``outputs``, served on CPU; the study's run ``parent`` names it in a tag. Loadable with
        ``mlflow.pyfunc.load_model``."""
        import mlflow
        import onnx
        from mlflow.models import infer_signature

        self.flush()
        mlflow.set_tracking_uri(self.tracking_uri)
        with mlflow.start_run(run_id=run_id):
            # explicit requirements: inferring them imports and times the model, for nothing here
            info = mlflow.onnx.log_model(onnx.load(str(onnx_file)), name=name, pip_requirements=["onnxruntime"],
                                         onnx_execution_providers=["CPUExecutionProvider"], input_example=example,
                                         signature=infer_signature(example, outputs),
                                         params={k: str(v) for k, v in params.items()}, metadata=dict(metadata))
        self.client.set_tag(parent, "squeezer.recommended_model", info.model_uri)
        return info.model_uri

    def reopen_trial_run(self, study: str, number: int) -> str | None:
        """Trial ``number``'s unfinished run (KILLED when a stopped process left it), RUNNING again: a trial that
        runs again under its own number (Ray Tune restores it) keeps one run. None if it has none."""
        self.flush()
        query = (f"tags.`{STUDY_TAG}` = '{study}' and tags.`{ROLE_TAG}` = 'trial' and "
                 f"tags.`{TRIAL_TAG}` = '{number}' and status != 'FINISHED'")
        runs = self.client.search_runs([self.experiment_id], filter_string=query, max_results=1)
        if not runs:
            return None
        run_id = runs[0].info.run_id
        self.client.update_run(run_id, status="RUNNING")
        if ERROR_TAG in runs[0].data.tags:
            self.client.delete_tag(run_id, ERROR_TAG)
        return run_id

    def log_result(self, run_id: RunId, metrics: Mapping[str, float] | None, curves: Curves = (),
                   model_dir: Path | None = None, error: str | None = None) -> None:
        """Everything a trial produced, in one batch (final metrics at step 0, curves at their epochs); queued.

        The files of ``model_dir`` (the deployed model and its export) are copied aside first: the caller may
        delete them as soon as this returns.
        """
        staged = None
        if model_dir is not None and model_dir.is_dir() and any(model_dir.iterdir()):
            staged = Path(tempfile.mkdtemp(dir=self._staging)) / "model"
            shutil.copytree(model_dir, staged)
        self._defer(self._log_result, run_id, dict(metrics or {}), [(s, dict(v)) for s, v in curves], staged, error)

    def _log_result(self, run_id: RunId, metrics: dict[str, float], curves: list[tuple[int, dict[str, float]]],
                    model_dir: Path | None, error: str | None) -> None:
        run_id = resolve(run_id)
        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for step, values in curves for k, v in values.items()]
        batch += [Metric(k, float(v), now, 0) for k, v in metrics.items()]
        tags = [RunTag(ERROR_TAG, error[:5000])] if error else []
        for start in range(0, max(len(batch), 1), _BATCH):
            self.client.log_batch(run_id, metrics=batch[start:start + _BATCH], tags=tags if start == 0 else [])
        if model_dir is not None:
            self.client.log_artifacts(run_id, str(model_dir))
            shutil.rmtree(model_dir.parent, ignore_errors=True)

    def end(self, run_id: RunId, status: str, reason: str = "") -> None:
        """Close a run: FINISHED, FAILED or KILLED (queued); a KILLED run keeps its ``reason`` as a tag."""
        if status == "KILLED" and reason:
            self.set_tag(run_id, ERROR_TAG, reason)
        self._defer(lambda: self.client.set_terminated(resolve(run_id), status=status))

    def set_tag(self, run_id: RunId, key: str, value: str) -> None:
        self._defer(lambda: self.client.set_tag(resolve(run_id), key, value))

    def trial_runs(self, study: str, status: str | None = None) -> list[Any]:
        """The study's trial runs (all pages), optionally only those with ``status`` (e.g. RUNNING), once every
        queued write is done."""
        self.flush()
        return self._trial_runs(study, status)

    def _trial_runs(self, study: str, status: str | None = None) -> list[Any]:
        """``trial_runs`` without waiting: for a queued write, which runs after those queued before it."""
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

    def kill(self, run_id: RunId, reason: str) -> None:
        self.end(run_id, RunStatus.to_string(RunStatus.KILLED), reason)

    def finished_runs(self, study: str, runs: list[Any] | None = None) -> dict[int, str]:
        """Each trial's FINISHED run by trial number (the newest, should an interrupted attempt have left another
        beside it), from ``runs`` when already read (``trial_runs``)."""
        found: dict[int, str] = {}
        for r in self.trial_runs(study) if runs is None else runs:  # newest first
            if r.info.status == "FINISHED":
                found.setdefault(int(r.data.tags[TRIAL_TAG]), r.info.run_id)
        return found

    def run_link(self, run_id: str) -> str:
        """A run's address in the MLflow UI, relative to it (``#/experiments/E/runs/R``)."""
        return f"#/experiments/{self.experiment_id}/runs/{run_id}"

    def tag_front(self, study: str, members: set[int]) -> None:
        """Tag each trial run pareto=true/false as the front stands now (queued behind the trials' own writes), so
        that a running, stopped or killed study's review shows its front; only changed tags are written."""
        self._defer(self._tag_front, study, set(members))

    def _tag_front(self, study: str, members: set[int], runs: list[Any] | None = None) -> int:
        """Tag ``runs`` (default: the study's trial runs) pareto=true/false where their tag differs; the number on
        the front. Only a FINISHED run can be a member (an interrupted attempt keeps its KILLED run beside it)."""
        on_front = 0
        for r in self._trial_runs(study) if runs is None else runs:
            member = r.info.status == "FINISHED" and int(r.data.tags[TRIAL_TAG]) in members
            on_front += member
            if r.data.tags.get("pareto") != ("true" if member else "false"):
                self.client.set_tag(r.info.run_id, "pareto", "true" if member else "false")
        return on_front

    def finish_study(self, parent: str, study: str, members: set[int], table_csv: str, figures: Mapping[str, Any],
                     summary: Mapping[str, float], recommended: int | None = None, page: str | None = None,
                     description: str | None = None) -> None:
        """Tag every trial run pareto=true/false and attach the front's table, plots (by file name), counts and
        ``description`` (Markdown, shown as the run's description) to the parent run.

        ``members`` are the trial numbers on the front; only a FINISHED run can be one (a trial that was interrupted
        and run again keeps its KILLED run beside the finished one).
        """
        runs = self.trial_runs(study)
        on_front = self._tag_front(study, members, runs)
        recommended_run = None if recommended is None else self.finished_runs(study, runs).get(recommended)
        if recommended_run is not None:
            self.client.set_tag(recommended_run, "recommended", "true")
            self.client.set_tag(parent, "squeezer.recommended", str(recommended))
        self.client.log_text(parent, table_csv, "pareto.csv")
        for name, figure in figures.items():
            if figure is not None:
                self.client.log_figure(parent, figure, name)
        if page is not None:
            self.client.log_text(parent, page, "pareto.html")
        if description is not None:
            self.client.set_tag(parent, "mlflow.note.content", description)
        now = int(time.time() * 1000)
        self.client.log_batch(parent, metrics=[Metric(k, float(v), now, 0) for k, v in summary.items()],
                              tags=[RunTag("squeezer.pareto_size", str(on_front))])
        self.client.set_terminated(parent, status="FINISHED")
