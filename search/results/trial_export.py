"""Hand a trial's model to its user: find the trial's finished run in MLflow, copy the files of the chosen format,
and write a README with its metrics, its ratios to the teacher and the code that reloads it."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from mlflow.tracking import MlflowClient

from squeezer.search.errors import ConfigError
from squeezer.search.config.kinds import CAUSAL_LM, CLASSIFIER, KINDS, ModelKind
from squeezer.search.results.formats import FORMATS
from squeezer.search.results.report import human_bytes, teacher_ratios
from squeezer.search.results.tracking import ROLE_TAG, STUDY_TAG, TRIAL_TAG

SHOWN = ("accuracy", "test_accuracy", "perplexity", "test_perplexity", "f1_macro", "size_bytes", "latency_ms",
         "latency_p90_ms", "ttft_ms", "latency_batch_ms", "throughput", "params", "non_embedding_params", "flops")


def export_trial(tracking_uri: str, study: str, number: int, out: Path, fmt: str | None = None,
                 role: str = "trial") -> Path:
    """Write trial ``number`` of ``study`` to ``out`` in ``fmt`` (onnx or torch; a language model's ort-genai folder,
    which onnxruntime_genai loads, or its save_pretrained folder, hf; None: the first a language model has of these,
    else onnx) with its README; return the README. ``role="finish"``: the trial as ``squeezer finish`` trained it
    (its latest such run)."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # a few small files: no progress bars
    client = MlflowClient(tracking_uri)
    run, parent = _runs(client, study, number, role)
    files = {a.path for a in client.list_artifacts(run.info.run_id)}
    fmt = fmt or _default_format(files)
    missing = [f for f in FORMATS[fmt] if f not in files]
    if missing:
        raise ConfigError("--format", f"trial {number} has no {missing[0]} (it was measured in another runtime, or "
                          f"its run was rebuilt after a crash); its files are {sorted(files)}", fmt)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name in FORMATS[fmt]:
            found = Path(client.download_artifacts(run.info.run_id, name, tmp))
            if found.is_dir():  # a language model's folder: its files, as save_pretrained wrote them
                shutil.copytree(found, out, dirs_exist_ok=True)
            else:
                shutil.copyfile(found, out / name)
    readme = out / "README.md"
    readme.write_text(describe(study, number, run, parent, fmt, out))
    return readme


def _runs(client: MlflowClient, study: str, number: int, role: str = "trial"):  # noqa: ANN202 - MLflow Run objects
    experiments = [e.experiment_id for e in client.search_experiments()]
    query = f"tags.`{STUDY_TAG}` = '{study}'"
    runs = client.search_runs(experiments, query, max_results=50_000)
    if not runs:
        raise ConfigError("--study-name", "no such study in the tracking store; run `squeezer search` first or "
                          "point --tracking-uri at its store", study)
    trials = [r for r in runs if r.data.tags.get(ROLE_TAG) == role and r.info.status == "FINISHED"]
    chosen = sorted((r for r in trials if int(r.data.tags[TRIAL_TAG]) == number), key=lambda r: -r.info.start_time)
    if not chosen:
        known = sorted(int(r.data.tags[TRIAL_TAG]) for r in trials)
        what = "finished trial" if role == "trial" else "trial finished by `squeezer finish`"
        raise ConfigError("--trial", f"no {what} with this number in study {study!r}; those there: {known}", number)
    parent = next((r for r in runs if r.data.tags.get(ROLE_TAG) == "study"), None)
    return chosen[0], parent


def describe(study: str, number: int, run, parent, fmt: str, out: Path) -> str:  # noqa: ANN001 - MLflow runs
    m = run.data.metrics
    teacher = {k.removeprefix("teacher."): v for k, v in (parent.data.metrics if parent else {}).items()
               if k.startswith("teacher.")}
    lines = [f"# Trial {number} of study {study}", "", f"`{run.info.run_name}`", "",
             "| metric | value | teacher |", "|---|---:|---:|"]
    for key in (k for k in SHOWN if k in m):
        value = human_bytes(m[key]) if key == "size_bytes" else f"{m[key]:.4g}"
        ref = teacher.get(key)
        shown = "" if ref is None else human_bytes(ref) if key == "size_bytes" else f"{ref:.4g}"
        lines.append(f"| {key} | {value} | {shown} |")
    return "\n".join(lines + README[kind_of(fmt).name](m, teacher, out, fmt)) + "\n"


def _default_format(files: set[str]) -> str:
    """The first format of the run's kind of model (``ModelKind.formats``) whose files the run holds."""
    for kind in KINDS.values():
        held = [f for f in kind.formats if FORMATS[f][0] in files]
        if held:
            return held[0]
    return CLASSIFIER.formats[0]  # none: ``export_trial`` names what is missing


def kind_of(fmt: str) -> ModelKind:
    return next(kind for kind in KINDS.values() if fmt in kind.formats)


def classifier(m: dict[str, float], teacher: dict[str, float], out: Path, fmt: str) -> list[str]:
    """A classifier's README after its metrics: the ratios, what they mean, its input and how to reload it."""
    lines: list[str] = []
    if teacher:
        r = teacher_ratios(m, teacher)
        lines += ["", f"{r['x_smaller']:.1f}x smaller and {r['x_faster']:.1f}x faster (batch 1) than the teacher, "
                  f"at {100 * r['accuracy_share']:.1f} % of its validation accuracy."]
    lines += ["", "Accuracy is on the validation split; `test_accuracy` on the test split, which the search never "
              "saw, both fed to the deployed model as raw input. Latency: median over repeats after warm-up, in the "
              "runtime the study measured in.", ""]
    lines += input_section(out, fmt) + ["## Reload", ""]
    if fmt == "onnx":
        lines += ["```python", "import numpy as np", "import onnxruntime as ort", "",
                  f'session = ort.InferenceSession("{out / "model.onnx"}")',
                  'logits = session.run(None, {"input": x})[0]   # x: a raw batch, as described above',
                  "```"]
    else:
        lines += ["```python", "from pathlib import Path", "from squeezer.search.runtime.export import load", "",
                  f'model = load(Path("{out}"))   # a torch module; quantization realised as the torch runtime does',
                  "logits = model(x)   # x: a raw batch, as described above", "```"]
    return lines


HF_NOTE = (" A study measured in ONNX Runtime GenAI keeps here the student's weights before the builder quantized "
           "them: `--format ort-genai` is what was measured.")


def language_model(m: dict[str, float], teacher: dict[str, float], out: Path, fmt: str) -> list[str]:
    """A language model's README after its metrics: what they mean, and how to load and generate (the folder's own
    README, which its runtime (``runtime.lm``) wrote, says it for this model's precision)."""
    lines = []
    if teacher:
        r = teacher_ratios(m, teacher)
        lines += ["", f"{r['x_smaller']:.1f}x smaller and {r['x_faster']:.1f}x faster per generated token than the "
                  f"teacher, its validation perplexity {100 / r['perplexity_share'] - 100:+.1f} % of the teacher's."]
    lines += ["", "Perplexity is on the validation text; `test_perplexity` on the test text, which the search never "
              "saw. `latency_ms`: milliseconds per generated token at batch 1 with the KV cache; `ttft_ms`: to the "
              "first token of the prompt; `throughput`: generated tokens per second at the measured batch. "
              "`size_bytes`: the bytes of the deployed model files (ONNX Runtime GenAI's model.onnx and its "
              "weights, or the safetensors of the torch runtime)." + HF_NOTE * (fmt == "hf"),
              "", "## Load and generate", ""]
    own = out / "README.md"
    loading = own.read_text().split("```python", 1)[-1].split("```", 1)[0] if own.is_file() else ""
    loading = loading.replace(f'"{FORMATS[fmt][0]}"', f'"{out}"')
    return lines + ["```python" + loading + "```"]


def input_section(out: Path, fmt: str) -> list[str]:
    """What the model takes and gives, as its metadata (ONNX) or architecture.json (torch) records it."""
    if fmt == "onnx":
        import onnx

        from squeezer.search.runtime.preprocess import onnx_metadata

        described = onnx_metadata(onnx.load(str(out / "model.onnx")))
    else:
        described = json.loads((out / "architecture.json").read_text()).get("inputs", {}).get("spec") or {}
    if not described:
        return []
    prep = described.get("preprocessing")
    done = "none: the values as they are" if not prep else (
        f"standardised inside the model ({prep['standardize']}: (x - mean) / std with the training split's "
        f"{len(prep['mean'])} mean(s) and std(s), recorded in its metadata)")
    images = described["dtype"] == "float32" and len(described["input_shape"]) == 4  # N, C, H, W
    raw = ("the image's **pixel values as decoded**, channels first, no scaling of your own: 0-255 for 8-bit "
           "PNG/JPEG files (e.g. `np.asarray(Image.open(f), dtype=np.float32)`, grayscale as one channel, RGB moved "
           "to the front with `.transpose(2, 0, 1)`); for images kept as arrays, the values as stored"
           if images else "the **raw** values as in your data (no scaling of your own)")
    return ["## Input and output", "",
            f"- input `input`: {described['dtype']}, shape {described['input_shape']}, {raw}",
            f"- preprocessing: {done}",
            f"- output `logits`: one score per class, in this order: {described['classes']}", ""]


#: A kind of model's README section after the metrics table, by the kind's name.
README = {CLASSIFIER.name: classifier, CAUSAL_LM.name: language_model}

