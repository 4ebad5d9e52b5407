"""The study's end: its Pareto front re-evaluated on the test split (never seen by the search), the recommended
member (logged as an MLflow model), and the front's record on the parent run, in the storage and on the console."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol

from optuna.trial import FrozenTrial, TrialState

from squeezer.search.results import scoring
from squeezer.search.results import report
from squeezer.search.trial import records
from squeezer.search.trial.liveness import ran_and_failed
from squeezer.search.results.pareto import feasible, pareto_trials
from squeezer.search.trial.recipe import flatten, replay_params
from squeezer.search.config.objectives import quality_of
from squeezer.search.runtime.ort import OnnxModel



class Session(Protocol):
    """What recording a study's front reads of its session (``study.session.Session`` is one)."""

    study: Any            # the optuna.Study
    bench: Any            # the trial.benches.Bench its trials share
    tracker: Any          # the results.tracking.Tracker
    name: str
    parent: str           # the study's MLflow run
    teacher: dict[str, float]
    tfidf: dict[str, float] | None
    out: Callable[[str], None]

    @property
    def config(self) -> Any: ...

    def run_name(self, trial: FrozenTrial) -> str: ...

    def log_hypervolume(self) -> float: ...


def record(session: Session) -> list[FrozenTrial]:
    """Re-evaluate the front on the test split, recommend a member (``scoring.recommend``), tag trial runs with
    their Pareto membership, attach the table and plot, print the table and counts."""
    front = pareto_trials(session.study, session.config.objectives)
    runs = session.tracker.finished_runs(session.name)  # read once: the test split's re-evaluation, the model, links
    tested = test_front(session, front, runs)
    samples = session.bench.validation_count
    chosen, why = scoring.recommend([records.metrics(t) for t in front], session.config.objectives,
                                    session.teacher, samples, session.config.search.min_accuracy_share)
    recommended = None if chosen is None else front[chosen].number
    trials = session.study.get_trials(deepcopy=False)
    completed = [t for t in trials if t.state == TrialState.COMPLETE]
    every_name = {t.number: session.run_name(t) for t in completed}
    names = {t.number: every_name[t.number] for t in front}
    # per study, keyed by trial number: Optuna keeps a finished trial's attributes as they were when it ended
    for key, value in (("recommended", recommended), ("recommended_because", why),
                       ("validation_samples", samples), ("run_names", {str(k): v for k, v in names.items()}),
                       ("mlflow_run_ids", {str(k): v for k, v in runs.items()})):
        records.write(session.study, **{key: value})  # what `squeezer pareto` prints again
    if recommended is not None:
        log_recommended(session, recommended, runs.get(recommended))
    failed = [t for t in trials if t.state == TrialState.FAIL and ran_and_failed(t)]
    interrupted = [t for t in trials if t.state == TrialState.FAIL and not ran_and_failed(t)]
    stopped = [t for t in trials if t.state == TrialState.PRUNED]
    ended = sorted(feasible(session.study), key=lambda t: t.number)
    figures = {"pareto.png": report.front_figure(completed, front, session.teacher, recommended),
               "hypervolume.png": report.hypervolume_figure(scoring.history(
                   [records.metrics(t) for t in ended], session.config.objectives, session.teacher,
                   session.config.search.reference, plain=True))}
    summary = {"trials.completed": len(completed), "trials.failed": len(failed),
               "trials.interrupted": len(interrupted), "trials.stopped_early": len(stopped),
               "pareto.size": len(front)}
    session.log_hypervolume()  # at its step, like every trial's: a step-0 summary point would break its history
    page = report.front_html(completed, front, every_name, session.teacher, recommended)
    rows = report.front_records(front, session.teacher, tested, recommended, names, samples)
    links = {number: session.tracker.run_link(run_id) for number, run_id in runs.items()}
    measured = (f"± the standard error of the validation accuracy on {samples} samples" if "accuracy" in
                session.teacher else f"validation perplexity on {samples} tokens")
    description = (f"**Pareto front of study {session.name}** ({len(front)} of {len(completed)} completed trials; "
                   f"{measured})\n\n"
                   f"{report.front_markdown(rows, session.teacher, links, session.tfidf)}\n\n"
                   f"**Recommended**: {why or 'none'}")
    session.tracker.finish_study(session.parent, session.name, {t.number for t in front},
                              report.front_csv(front, session.teacher, tested), figures, summary, recommended, page,
                              description)
    for figure in figures.values():
        report.close(figure)
    early = f", {len(stopped)} stopped early" if stopped else ""
    early += f", {len(interrupted)} interrupted (run again)" if interrupted else ""
    session.out(f"\nPareto front ({len(front)} of {len(completed)} completed trials; {len(failed)} failed{early}):")
    session.out(report.front_table(front, session.teacher, tested, recommended, names, why, samples, session.tfidf))
    if session.config.search.repeats > 1:
        session.out(f"\nRecipes run with {session.config.search.repeats} seeds (mean ± standard deviation):")
        session.out("\n".join(report.repeat_lines(completed)))
    return front

def log_recommended(session: Session, number: int, run: str | None) -> None:
    """The recommended trial's deployed ONNX file as an MLflow model of its ``run``, named by the study's run:
    its recipe as params, three raw validation samples as its input example."""
    with tempfile.TemporaryDirectory(prefix="squeezer-model-") as tmp:
        folder = session.tracker.artifacts(run, Path(tmp))
        if folder is None or not (folder / "model.onnx").is_file():
            return
        example = session.bench.splits.val_raw[:3]
        outputs = {"logits": OnnxModel(folder / "model.onnx").predict(example).numpy()}
        params = flatten(replay_params(session.config, session.study.trials[number].params))
        session.tracker.log_onnx_model(session.parent, run, folder / "model.onnx", "recommended_model",
                                    example.numpy(), outputs, params,
                                    {"squeezer.study": session.name, "squeezer.trial": number})

def test_front(session: Session, front: list[FrozenTrial], runs: Mapping[int, str]) -> dict[int, float]:
    """Each Pareto member's quality on the test split (never seen by the search: accuracy, or a language model's
    perplexity), from its deployed artifact in its MLflow run (``runs``, by trial number); logged there as
    ``test_accuracy`` (``test_perplexity``) and kept in the study for ``squeezer pareto``."""
    metric = quality_of(session.teacher).test_metric
    tested = dict(records.StudyRecord.of(session.study, metric).tested)
    with tempfile.TemporaryDirectory(prefix="squeezer-test-") as tmp:
        for trial in front:
            if trial.number in tested:
                continue
            run_id = runs.get(trial.number)
            folder = session.tracker.artifacts(run_id, Path(tmp) / str(trial.number))
            if run_id is None or folder is None:  # a run rebuilt after a crash has no artifacts
                continue
            tested[trial.number] = session.bench.test_quality(folder)  # the user's raw input, as deployed
            session.tracker.log_metrics(run_id, {metric: tested[trial.number]})
    records.write(session.study, **{metric: {str(k): v for k, v in tested.items()}})
    return tested
