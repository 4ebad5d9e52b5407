"""The ``squeezer`` command: ``search`` runs a study, ``pareto`` prints a study's front, ``export`` writes one
trial's model, ``pick`` exports the most accurate member within a budget, ``ui`` opens MLflow."""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import sys
from typing import Any, NoReturn, Sequence

from squeezer.search.results.formats import FORMAT_HELP, FORMATS

EXIT_BAD_INPUT = 2
UI_PORT = 5000
UI_URL = f"http://127.0.0.1:{UI_PORT}"  # where `squeezer ui` serves by default


class _Stopped(KeyboardInterrupt):
    """SIGTERM (what a scheduler or `kill` sends), raised where Ctrl-C would be: both end a study the same way."""


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
    except _BadFlag as err:
        print(f"squeezer: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    previous = signal.signal(signal.SIGTERM, _terminate) if _main_thread() else None
    try:
        return args.handler(args)
    except KeyboardInterrupt as stop:
        how = "stopped by SIGTERM" if isinstance(stop, _Stopped) else "interrupted"
        print(f"\nsqueezer: {how}; finished trials are kept — run the same command to resume", file=sys.stderr)
        return 128 + (signal.SIGTERM if isinstance(stop, _Stopped) else signal.SIGINT)
    except Exception as err:
        from squeezer.search.errors import ConfigError  # imported late: `squeezer --help` should not load torch

        if isinstance(err, ConfigError):
            print(f"squeezer: error: {err}", file=sys.stderr)
            return EXIT_BAD_INPUT
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _terminate(signum: int, frame: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one stop at a time: the study is closing its stores
    raise _Stopped()


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


class _BadFlag(Exception):
    """A malformed command line: one line naming the flag, not the whole usage text."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix("squeezer").strip()
        raise _BadFlag(f"{command + ': ' if command else ''}{message} (see {self.prog} --help)")


def _search(args: argparse.Namespace) -> int:
    from squeezer.search.config.experiment import load_config, with_search
    from squeezer.search.config.rules import LIMITS, MAX_SEED, check_name
    from squeezer.search.errors import ConfigError
    from squeezer.search.results.review import view_links
    from squeezer.search.runner import run_study

    for flag, value, low, high in (("--trials", args.trials, 1, LIMITS["search.trials"]),
                                   ("--seed", args.seed, 0, MAX_SEED), ("--jobs", args.jobs, 1, LIMITS["search.jobs"])):
        if value is not None and not low <= value <= high:
            raise ConfigError(flag, f"must be an integer in [{low}, {high}]", value)
    config = with_search(load_config(args.config), backend=args.backend, address=args.address,
                         max_concurrent=args.max_concurrent, cpus_per_trial=args.cpus_per_trial,
                         gpus_per_trial=args.gpus_per_trial, jobs=args.jobs)
    if args.jobs is not None and config.search.backend != "optuna":
        raise ConfigError("--jobs", "applies to backend optuna; with ray, use --max-concurrent", args.jobs)
    for flag, value in (("--address", args.address), ("--max-concurrent", args.max_concurrent),
                        ("--cpus-per-trial", args.cpus_per_trial), ("--gpus-per-trial", args.gpus_per_trial)):
        if value is not None and config.search.backend != "ray":
            raise ConfigError(flag, f"applies to backend ray only; this study runs on {config.search.backend!r} "
                              "(add --backend ray)", value)
    if args.study_name is not None:
        check_name(args.study_name, "--study-name")
    result = run_study(config, trials=args.trials, study_name=args.study_name, storage=args.storage,
                       tracking_uri=args.tracking_uri, seed=args.seed)
    table, charts = view_links(UI_URL, result.experiment_id, result.study.study_name)
    print(f"\nreview the front in the MLflow UI: squeezer ui --tracking-uri {args.tracking_uri}, then open\n"
          f"  {table}\n  as charts: {charts}")
    return 0


STRICT = ("the plain front: every run, dominance without tolerance (by default latencies within their confidence "
          "interval and accuracies within their standard error tie, and a recipe's runs are one entry)")


def _stored_front(args: argparse.Namespace) -> tuple[Any, list[Any]]:
    """The study ``--study-name`` in ``--storage`` and its Pareto members."""
    import optuna

    from squeezer.search.study import storage
    from squeezer.search.study.destinations import check_storage
    from squeezer.search.results.pareto import pareto_trials
    from squeezer.search.study.halving import user_study
    from squeezer.search.trial import records

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    check_storage(args.storage, must_exist=True)
    study = user_study(storage.open_storage(args.storage), args.study_name, args.storage)
    return study, pareto_trials(study, records.get(study, records.OBJECTIVES), strict=args.strict)


def _pareto(args: argparse.Namespace) -> int:
    from squeezer.search.results import report
    from squeezer.search.trial.records import StudyRecord

    study, front = _stored_front(args)
    r = StudyRecord.of(study)
    teacher, recommended, tested, names, samples, simple = (r.teacher, r.recommended, r.tested, r.run_names,
                                                            r.validation_samples, r.tfidf)
    if args.format == "table":
        kind = "plain front of every run" if args.strict else "ties within measurement noise, one entry per recipe"
        print(f"Pareto front of {args.study_name!r} ({len(front)} trials; {kind}):")
        print(report.front_table(front, teacher, tested, recommended, names, r.recommended_because, samples,
                                 simple))
        return 0
    rows = report.front_records(front, teacher, tested, recommended, names, samples)
    if args.format == "json":
        print(json.dumps({"study": args.study_name, "teacher": teacher, "tfidf": simple, "members": rows},
                         indent=2))
    elif args.format == "markdown":
        print(report.front_markdown(rows, teacher, simple=simple))
    else:
        flat = [{**{k: v for k, v in row.items() if k != "params"}, **row["params"]} for row in rows]
        writer = csv.DictWriter(sys.stdout, fieldnames=list(dict.fromkeys(k for r in flat for k in r)))
        writer.writeheader()
        writer.writerows(flat)
    return 0


def _export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from squeezer.search.study.destinations import check_out, check_tracking_uri
    from squeezer.search.errors import ConfigError
    from squeezer.search.results.trial_export import export_trial
    from squeezer.search.locking import absolute

    if args.trial < 0:
        raise ConfigError("--trial", "must be a trial number >= 0", args.trial)
    check_out(Path(args.out))
    check_tracking_uri(absolute(args.tracking_uri), must_exist=True)  # reading a store that is not there makes one
    readme = export_trial(absolute(args.tracking_uri), args.study_name, args.trial, Path(args.out), args.format)
    print(f"trial {args.trial} written to {readme.parent} (see {readme.name})")
    return 0


def _finish(args: argparse.Namespace) -> int:
    from pathlib import Path

    from squeezer.compressors.progress import Printer, printing
    from squeezer.search.config.experiment import load_config
    from squeezer.search.config.kinds import KINDS
    from squeezer.search.errors import ConfigError
    from squeezer.search.locking import absolute
    from squeezer.search.results.report import metrics_line
    from squeezer.search.results.trial_export import export_trial
    from squeezer.search.study.destinations import check_out, check_storage, check_tracking_uri
    from squeezer.search.study.finish import finish

    config = load_config(args.config)
    if args.out:
        check_out(Path(args.out))
    storage, tracking = absolute(args.storage), absolute(args.tracking_uri)
    check_storage(storage, must_exist=True)
    check_tracking_uri(tracking, must_exist=True)
    budgets = {kind.budget[1]: kind for kind in KINDS.values()}  # --steps: a language model's; --epochs: ...
    given = {setting: getattr(args, setting) for setting in budgets}
    for setting, kind in budgets.items():
        if given[setting] is not None and kind is not config.kind:
            raise ConfigError(f"--{setting}", f"is {kind.title}'s budget; this study's is {config.kind.budget_flag}",
                              given[setting])
    with printing(Printer()):
        done = finish(config, args.trial, storage, tracking, study_name=args.study_name,
                      budget=given[config.kind.budget[1]], until_plateau=args.until_plateau, patience=args.patience)
    print(f"finished trial {args.trial}: {metrics_line(done.metrics)} (run {done.run_id})")
    if args.out:
        readme = export_trial(tracking, args.study_name or config.name, args.trial, Path(args.out), args.format,
                              role="finish")
        print(f"written to {readme.parent} (see {readme.name})")
    return 0


def _pick(args: argparse.Namespace) -> int:
    from pathlib import Path

    from squeezer.search.study.destinations import check_out, check_tracking_uri
    from squeezer.search.errors import ConfigError
    from squeezer.search.results.trial_export import export_trial
    from squeezer.search.locking import absolute
    from squeezer.search.results.pick import UNITS_BYTES, UNITS_MS, Budget, amount, pick
    from squeezer.search.trial import records
    import math

    if args.min_accuracy is not None and not 0 < args.min_accuracy <= 1:
        raise ConfigError("--min-accuracy", "must be a validation accuracy in (0, 1]", args.min_accuracy)
    size = None if args.max_size is None else amount(args.max_size, UNITS_BYTES, "B", "--max-size", "100KB")
    latency = None if args.max_latency is None else amount(args.max_latency, UNITS_MS, "ms", "--max-latency",
                                                           "0.1ms")
    if args.max_perplexity is not None and not (math.isfinite(args.max_perplexity) and args.max_perplexity >= 1):
        raise ConfigError("--max-perplexity", "must be a validation perplexity >= 1", args.max_perplexity)
    budget = Budget(size, latency, args.min_accuracy, args.max_perplexity)
    check_out(Path(args.out))
    check_tracking_uri(absolute(args.tracking_uri), must_exist=True)
    _, front = _stored_front(args)
    picked, _, why = pick([(t.number, records.metrics(t)) for t in front], budget)
    if picked is None:
        print(why, file=sys.stderr)
        return 1
    readme = export_trial(absolute(args.tracking_uri), args.study_name, picked, Path(args.out), args.format)
    print(f"picked trial {picked}: {why}; written to {readme.parent} (see {readme.name})")
    return 0


def _ui(args: argparse.Namespace) -> int:
    from squeezer.search.study.destinations import check_tracking_uri
    from squeezer.search.errors import ConfigError
    from squeezer.search.locking import absolute
    from squeezer.search.results.review import experiment_links

    if not 0 < args.port < 65536:
        raise ConfigError("--port", "must be a TCP port in [1, 65535]", args.port)
    check_tracking_uri(absolute(args.tracking_uri), must_exist=True)
    os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", args.tracking_uri,
               "--host", args.host, "--port", str(args.port)]
    url = f"http://{args.host}:{args.port}"
    print(f"MLflow UI on {url} (Ctrl-C to stop)", flush=True)
    for line in experiment_links(args.tracking_uri, url):
        print(line, flush=True)
    os.execv(sys.executable, command)
    return 0  # not reached


def _parser() -> argparse.ArgumentParser:
    from squeezer.search.defaults import DEFAULT_STORAGE, DEFAULT_TRACKING_URI

    parser = _Parser(prog="squeezer", description="AutoML for model compression.")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    search = commands.add_parser("search", help="run (or resume) a compression search from a YAML config")
    search.add_argument("config", help="experiment YAML file, e.g. experiments/digits.yaml")
    search.add_argument("--trials", type=int, help="finish with this many trials in the study (default: config)")
    search.add_argument("--study-name", help="study name (default: the config's name); an existing one resumes")
    search.add_argument("--seed", type=int, help="sampler and trial seed (default: the config's seed)")
    search.add_argument("--backend", choices=["optuna", "ray"], help="who runs the trials (default: config, optuna)")
    search.add_argument("--jobs", type=int, help="optuna: processes running trials at once on this machine "
                        "(default: config, 1)")
    search.add_argument("--address", help="ray: join this running cluster (default: start a local Ray)")
    search.add_argument("--max-concurrent", type=int, help="ray: trials at once (default: one per free CPU slot)")
    search.add_argument("--cpus-per-trial", type=float, help="ray: CPUs per trial (default: 1)")
    search.add_argument("--gpus-per-trial", type=float, help="ray: GPUs per trial, e.g. 0.125: eight trials share "
                        "a GPU (default: none)")
    search.set_defaults(handler=_search)

    pareto = commands.add_parser("pareto", help="print the Pareto front of a study")
    pareto.add_argument("--study-name", required=True)
    pareto.add_argument("--format", choices=("table", "csv", "json", "markdown"), default="table",
                        help="table (default, fits 120 columns), or every member's numbers as csv, json or markdown")
    pareto.add_argument("--strict", action="store_true", help=STRICT)
    pareto.set_defaults(handler=_pareto)

    export = commands.add_parser("export", help="write one trial's model (ONNX, torch, ONNX Runtime GenAI or a "
                                                "save_pretrained folder) with a README")
    export.add_argument("--study-name", required=True)
    export.add_argument("--trial", type=int, required=True, help="the trial number (as in the Pareto table)")
    export.add_argument("--out", required=True, help="the folder to write")
    export.add_argument("--format", choices=list(FORMATS), default=None, help=FORMAT_HELP)
    export.set_defaults(handler=_export)

    fin = commands.add_parser("finish", help="train one trial's recipe to the end (a longer budget), log and export it")
    fin.add_argument("config", help="the study's experiment YAML file (its data, teacher and pipeline)")
    fin.add_argument("--trial", type=int, required=True, help="the trial number (as in the Pareto table)")
    fin.add_argument("--study-name", help="study name (default: the config's name)")
    budget = fin.add_mutually_exclusive_group()
    budget.add_argument("--steps", type=int, help="a language model: lm_distill.steps to train")
    budget.add_argument("--epochs", type=int, help="a classifier: distill.epochs to train")
    fin.add_argument("--until-plateau", action="store_true",
                     help="stop once validation quality has not improved for --patience evaluations (the budget: "
                          "--steps / --epochs, else 10x the study's), keeping the best weights")
    fin.add_argument("--patience", type=int, default=3, help="evaluations without improvement (default: 3)")
    fin.add_argument("--out", help="also export the finished model to this folder")
    fin.add_argument("--format", choices=list(FORMATS), default=None, help=FORMAT_HELP)
    fin.set_defaults(handler=_finish)

    pick = commands.add_parser("pick", help="export the most accurate Pareto member within a size / latency budget")
    pick.add_argument("--study-name", required=True)
    pick.add_argument("--max-size", help="the deployed file's bytes at most, e.g. 100KB, 2MB")
    pick.add_argument("--max-latency", help="batch-1 latency at most, e.g. 0.1ms")
    pick.add_argument("--min-accuracy", type=float, help="validation accuracy at least, e.g. 0.95")
    pick.add_argument("--max-perplexity", type=float, help="a language model's validation perplexity at most")
    pick.add_argument("--out", required=True, help="the folder to write")
    pick.add_argument("--strict", action="store_true", help=STRICT)
    pick.add_argument("--format", choices=list(FORMATS), default=None, help=FORMAT_HELP)
    pick.set_defaults(handler=_pick)

    for sub in (search, pareto, pick, fin):
        sub.add_argument("--storage", default=DEFAULT_STORAGE,
                         help=f"Optuna storage: a database URL or journal:PATH (default: {DEFAULT_STORAGE})")
    for sub in (search, export, pick, fin):
        sub.add_argument("--tracking-uri", default=DEFAULT_TRACKING_URI,
                         help=f"MLflow tracking URI (default: {DEFAULT_TRACKING_URI})")

    ui = commands.add_parser("ui", help="open the MLflow UI on the tracking store")
    ui.add_argument("--tracking-uri", default=DEFAULT_TRACKING_URI)
    ui.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback only)")
    ui.add_argument("--port", type=int, default=UI_PORT)
    ui.set_defaults(handler=_ui)
    return parser


if __name__ == "__main__":
    sys.exit(main())
