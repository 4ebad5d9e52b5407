"""How trials and the Pareto front are shown: progress lines, the front as a table, CSV and plot."""

from __future__ import annotations

import csv
import io
import math
import statistics
from typing import Any, Mapping, Sequence

from optuna.trial import FrozenTrial

from squeezer import compressors
from squeezer.search.trial import baselines
from squeezer.search.trial import tfidf
from squeezer.search.trial import records
from squeezer.search.config.objectives import ACCURACY, PERPLEXITY, Quality, quality_of, standard_error
from squeezer.search.trial.recipe import recipe_key
from squeezer.spaces import plain_names

COLUMNS = ("accuracy", "size_bytes", "latency_ms", "latency_p90_ms", "throughput", "params")


def fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def metrics_line(metrics: Mapping[str, float]) -> str:
    q = quality_of(metrics).metric
    return (f"{q}={metrics[q]:.4f} size={human_bytes(metrics['size_bytes'])} "
            f"latency={metrics['latency_ms']:.3f}ms{'/token' if q == 'perplexity' else ''}")


def recipe(params: Mapping[str, Any]) -> str:
    """The trial's choices in one short string, e.g. ``student.family=mlp prune.ratio=0.31 quantize.bits=8``."""
    return " ".join(f"{k}={fmt(v)}" for k, v in plain_names(params).items())


WIDTH = 120  # the Pareto table's lines fit a terminal this wide
WARN_SHARE = 0.9  # the summary warns when no member keeps this share of the teacher's accuracy


def repeat_lines(completed: Sequence[FrozenTrial]) -> list[str]:
    """One line per recipe that ran more than once: its trials, and each metric's mean ± standard deviation."""
    runs: dict[tuple, list[FrozenTrial]] = {}
    for trial in completed:
        runs.setdefault(recipe_key(trial.params), []).append(trial)
    lines = []
    for group in (g for g in runs.values() if len(g) > 1):
        q = quality_of(records.metrics(group[0])).metric
        spread = {key: [records.metrics(t)[key] for t in group] for key in (q, "size_bytes", "latency_ms")}
        (quality, sd), (size, size_sd), (latency, latency_sd) = (
            (statistics.mean(v), statistics.stdev(v)) for v in spread.values())
        lines.append(f"  trials {','.join(str(t.number) for t in group)}: {q} {quality:.4f} ± {sd:.4f}  "
                     f"size {human_bytes(size)} ± {human_bytes(size_sd)}  latency {latency:.3f} ± "
                     f"{latency_sd:.3f}ms  {recipe(group[0].params)}")
    return lines or ["  (no recipe finished more than once)"]


def run_name(number: int, params: Mapping[str, Any]) -> str:
    """The trial at a glance, for MLflow's runs table: ``t07 cnn d2c8 · T3.1 α0.7 · prune 30 % · int8``: the
    student's family and numbers, then each step's ``Compressor.label`` of its settings in ``params`` (flat)."""
    p = plain_names(params)
    if "baseline.recipe" in p:  # squeezer.search.trial.baselines
        return f"t{number:02d} teacher as trained · {p['baseline.recipe']} (baseline)"
    student = {k.removeprefix("student."): v for k, v in p.items() if k.startswith("student.")}
    family = student.pop("family", "model")
    shape = "".join(f"{k[0]}{fmt(v)}" for k, v in student.items() if isinstance(v, (int, float))
                    and not isinstance(v, bool))
    parts = [f"t{number:02d} {family} {shape}".rstrip()]
    steps: dict[str, dict[str, Any]] = {}
    for name, value in p.items():
        step, _, key = name.partition(".")
        if step != "student" and key and "." not in key:
            steps.setdefault(step, {})[key] = value
    parts += [label for step, settings in steps.items() if (label := _label(step, settings))]
    return " · ".join(parts)


def _label(step: str, settings: Mapping[str, Any]) -> str:
    """The step's own words for its settings; '' for a step not known here or settings it refuses."""
    try:
        return compressors.get(step)(dict(settings)).label()
    except (KeyError, ValueError, TypeError):
        return ""


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB"):
        if n < 1024 or unit == "MB":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024
    return f"{n:.1f}GB"


def teacher_ratios(metrics: Mapping[str, float], teacher: Mapping[str, float]) -> dict[str, float]:
    """How a student compares with the teacher: times smaller (bytes), times faster (batch-1 latency), and its share
    of the teacher's quality (``accuracy_share``: its accuracy over the teacher's; ``perplexity_share``: the
    teacher's perplexity over its)."""
    q = quality_of(teacher)
    return {"x_smaller": teacher["size_bytes"] / metrics["size_bytes"],
            "x_faster": teacher["latency_ms"] / metrics["latency_ms"],
            share_key(q): q.share(metrics[q.metric], teacher[q.metric])}


def share_key(q: Quality) -> str:
    return f"{q.metric}_share"


def front_rows(front: Sequence[FrozenTrial], teacher: Mapping[str, float] | None = None,
               tested: Mapping[int, float] | None = None) -> list[dict[str, Any]]:
    """One row per Pareto trial, best accuracy first: its number, metrics, test accuracy, ratios to the teacher
    (x smaller, x faster, share of its accuracy) and parameters."""
    rows = []
    q = quality_of(teacher or (records.metrics(front[0]) if front else {}))
    for t in front:
        m = records.metrics(t)
        row: dict[str, Any] = {"trial": t.number, **{c: m.get(c) for c in columns(q)}}
        row[q.test_metric] = (tested or {}).get(t.number)
        if teacher:
            row |= teacher_ratios(m, teacher)
        rows.append(row | dict(t.params))
    return sorted(rows, key=lambda r: -(r[q.metric] or 0) if q.higher_is_better else (r[q.metric] or math.inf))


def columns(q: Quality) -> tuple[str, ...]:
    """The metrics a front's rows show: the quality first, then size and speed."""
    return (q.metric, *COLUMNS[1:], *(("ttft_ms",) if q is PERPLEXITY else ()))


def front_csv(front: Sequence[FrozenTrial], teacher: Mapping[str, float] | None = None,
              tested: Mapping[int, float] | None = None) -> str:
    rows = front_rows(front, teacher, tested)
    fields = list(dict.fromkeys(k for row in rows for k in row)) or ["trial", *COLUMNS]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def front_table(front: Sequence[FrozenTrial], teacher: Mapping[str, float] | None = None,
                tested: Mapping[int, float] | None = None, recommended: int | None = None,
                names: Mapping[int, str] | None = None, why: str = "", samples: int | None = None,
                simple: Mapping[str, float] | None = None) -> str:
    """An aligned table: trial, accuracy (validation, with its standard error over ``samples`` examples; test), size,
    latency, ratios to the teacher, the recipe as its run is named (``names``, by trial number; else from its
    sampled params); the recommended member marked ``*`` and ``why``; the teacher last, then a text study's TF-IDF
    baseline (``simple``) and whether a member matches it; a warning when the best member keeps less than
    ``WARN_SHARE`` of the teacher's accuracy."""
    q = quality_of(teacher or (records.metrics(front[0]) if front else {}))
    name = q.metric if q is ACCURACY else "ppl"
    head = f"{'trial':>6} {name:>8} {'±se':>5} {'test':>6} {'size':>8} {'latency':>9}"
    head += f" {'smaller':>7} {'faster':>6} {'of ' + name[:3]:>6}" if teacher else ""
    lines = [head + "  recipe"]
    rows = front_records(front, teacher, tested, recommended, names, samples)
    for row in rows:
        test = "" if row[q.test_metric] is None else _fmt(row[q.test_metric], 6)
        error = "" if row.get(f"{q.metric}_se") is None else f"{row[f'{q.metric}_se']:.3f}".lstrip("0")
        mark = "*" if row["recommended"] else " "
        line = (f"{row['trial']:>5}{mark} {_fmt(row[q.metric], 8):>8} {error:>5} {test:>6} "
                f"{human_bytes(row['size_bytes']):>8} {row['latency_ms']:>7.3f}ms")
        if teacher:
            line += f" {row['x_smaller']:>6.1f}x {row['x_faster']:>5.1f}x {100 * row[share_key(q)]:>5.1f}%"
        room = WIDTH - len(line) - 2  # the line fits the terminal: a long recipe is cut (whole in --format csv)
        cut = row["recipe"] if len(row["recipe"]) <= room else row["recipe"][:room - 1] + "…"
        lines.append(f"{line}  {cut}")
    if teacher:
        test = _fmt(teacher[q.test_metric], 6) if q.test_metric in teacher else ""
        lines.append(f"{'teacher':>6} {_fmt(teacher[q.metric], 8):>8} {'':>5} {test:>6} "
                     f"{human_bytes(teacher['size_bytes']):>8} {teacher['latency_ms']:>7.3f}ms {'1.0x':>7} "
                     f"{'1.0x':>6} {'100%':>6}")
    if simple:
        lines.append(_simple_line(simple, teacher))
    if recommended is not None:
        lines.append(f"* recommended: {why or 'the knee of the front'}")
    best = max((row.get(share_key(q), 1.0) for row in rows), default=1.0)
    if teacher and rows and best < WARN_SHARE:
        lines.append(f"warning: the best member keeps only {best:.0%} of the teacher's {q.metric}")
    if simple:
        lines.append(tfidf.verdict([(r["trial"], r) for r in rows], simple))
    return "\n".join(lines)


def _fmt(value: float, width: int) -> str:
    """A quality figure in ``width`` characters: four decimals for accuracy, fewer as a perplexity grows."""
    text = f"{value:.4f}"
    return text if len(text) <= width else f"{value:.{max(0, width - len(str(int(value))) - 1)}f}"


def _simple_line(simple: Mapping[str, float], teacher: Mapping[str, float] | None) -> str:
    test = f"{simple['test_accuracy']:.4f}" if "test_accuracy" in simple else ""
    line = (f"{'tf-idf':>6} {simple['accuracy']:>8.4f} {'':>5} {test:>6} {human_bytes(simple['size_bytes']):>8} "
            f"{simple['latency_ms']:>7.3f}ms")
    if teacher:
        ratios = teacher_ratios(simple, teacher)
        line += f" {ratios['x_smaller']:>6.1f}x {ratios['x_faster']:>5.1f}x {100 * ratios['accuracy_share']:>5.1f}%"
    return line + "  TF-IDF + logistic regression (scikit-learn; latency includes vectorising)"


def member_recipe(number: int, params: Mapping[str, Any], names: Mapping[int, str] | None = None) -> str:
    """A member's recipe as its run is named (``names``, by trial number; else from its sampled params), without
    the trial number: ``mlp d2w70 · T3.5 α0.54 · prune 39 % · fp32``."""
    return ((names or {}).get(number) or run_name(number, params)).removeprefix(f"t{number:02d} ")


def front_records(front: Sequence[FrozenTrial], teacher: Mapping[str, float] | None = None,
                  tested: Mapping[int, float] | None = None, recommended: int | None = None,
                  names: Mapping[int, str] | None = None, samples: int | None = None) -> list[dict[str, Any]]:
    """``front_rows`` with each member's readable recipe, the standard error of its validation accuracy and whether
    it is the recommended one: what ``squeezer pareto --format csv|json|markdown`` writes."""
    records = []
    rows = front_rows(front, teacher, tested)
    q = quality_of(teacher or (rows[0] if rows else {}))
    for row in rows:
        params = {k: v for k, v in row.items() if "." in k or k == baselines.PARAM}
        # a proportion's standard error (accuracy); perplexity's is not a proportion's: none given
        error = standard_error(row[q.metric], samples) if samples and q is ACCURACY else None
        records.append({"trial": row["trial"], "recommended": row["trial"] == recommended,
                        **{k: v for k, v in row.items() if k != "trial" and k not in params},
                        f"{q.metric}_se": error, "recipe": member_recipe(row["trial"], params, names),
                        "params": params})
    return records


def front_markdown(records: Sequence[Mapping[str, Any]], teacher: Mapping[str, float] | None = None,
                   links: Mapping[int, str] | None = None, simple: Mapping[str, float] | None = None) -> str:
    """The records as a Markdown table (the recommended member in bold; each trial linked to ``links[trial]``),
    the teacher last, then a text study's TF-IDF baseline (``simple``) and whether a member matches it."""
    q = quality_of(teacher or (records[0] if records else {}))
    lines = [f"| trial | {q.metric} | ±se | test | size | latency | x smaller | x faster | % of teacher | recipe |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in records:
        trial = f"[{r['trial']}]({links[r['trial']]})" if r["trial"] in (links or {}) else str(r["trial"])
        trial = f"**{trial}**" if r["recommended"] else trial
        error = r.get(f"{q.metric}_se")
        cells = [trial, f"{r[q.metric]:.4f}", "" if error is None else f"{error:.3f}",
                 "" if r[q.test_metric] is None else f"{r[q.test_metric]:.4f}", human_bytes(r["size_bytes"]),
                 f"{r['latency_ms']:.3f} ms", *(f"{r[k]:.1f}x" for k in ("x_smaller", "x_faster") if k in r),
                 *([f"{100 * r[share_key(q)]:.1f} %"] if share_key(q) in r else []), r["recipe"]]
        lines.append("| " + " | ".join(cells) + " |")
    if teacher:
        test = f"{teacher[q.test_metric]:.4f}" if q.test_metric in teacher else ""
        lines.append(f"| teacher | {teacher[q.metric]:.4f} | | {test} | {human_bytes(teacher['size_bytes'])} | "
                     f"{teacher['latency_ms']:.3f} ms | 1x | 1x | 100 % | |")
    if simple:
        ratios = teacher_ratios(simple, teacher) if teacher else {}
        lines.append(f"| tf-idf | {simple['accuracy']:.4f} | | {simple.get('test_accuracy', float('nan')):.4f} | "
                     f"{human_bytes(simple['size_bytes'])} | {simple['latency_ms']:.3f} ms | "
                     + (f"{ratios['x_smaller']:.1f}x | {ratios['x_faster']:.1f}x | "
                        f"{100 * ratios['accuracy_share']:.1f} % | " if ratios else "| | | ")
                     + "TF-IDF + logistic regression |")
        lines.append("\n" + tfidf.verdict([(r["trial"], r) for r in records], simple))
    return "\n".join(lines)


def front_figure(completed: Sequence[FrozenTrial], front: Sequence[FrozenTrial],
                 teacher: Mapping[str, float] | None = None, recommended: int | None = None) -> Any:
    """Accuracy against size, against latency, and all three in 3-D; every completed trial in grey, the front in
    colour, each member labelled with its trial number, the recommended one ringed, the teacher a star."""
    if not completed:
        return None
    q = quality_of(teacher or records.metrics(completed[0])).metric
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(16, 4.6))
    by_size = fig.add_subplot(1, 3, 1)
    axes = [by_size, fig.add_subplot(1, 3, 2, sharey=by_size)]
    members = {t.number for t in front}
    others = [t for t in completed if t.number not in members]
    grey: dict[str, Any] = {"c": "0.7", "s": 18}
    red: dict[str, Any] = {"c": "tab:red", "s": 36, "label": "Pareto front"}
    for ax, metric, label in ((axes[0], "size_bytes", "size on disk (bytes, log)"),
                              (axes[1], "latency_ms", "batch-1 latency (ms, log)")):
        for subset, style in ((others, grey), (sorted(front, key=lambda t: records.metrics(t)[metric]), red)):
            ax.scatter([records.metrics(t)[metric] for t in subset],
                       [records.metrics(t)[q] for t in subset], **style)
        for t in front:
            m = records.metrics(t)
            ax.annotate(str(t.number), (m[metric], m[q]), textcoords="offset points", xytext=(4, 4),
                        fontsize=7)
            if t.number == recommended:
                ax.scatter([m[metric]], [m[q]], s=220, facecolors="none", edgecolors="tab:blue",
                           linewidths=1.8, label="recommended")
        if teacher:
            ax.scatter([teacher[metric]], [teacher[q]], marker="*", s=160, c="k", label="teacher")
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"validation {q}")
    axes[1].legend(loc="lower right")
    cube = fig.add_subplot(1, 3, 3, projection="3d")  # matplotlib's 3-D axes have no log scale: log10 by hand
    for subset, style in ((others, grey), (list(front), red)):
        m = [records.metrics(t) for t in subset]
        cube.scatter([math.log10(x["size_bytes"]) for x in m], [math.log10(x["latency_ms"]) for x in m],
                     [x[q] for x in m], **style)
    cube.set_xlabel("log10 bytes")
    cube.set_ylabel("log10 latency (ms)")
    cube.set_zlabel(q)
    fig.suptitle("Pareto front over all objectives (2-D views, and all three)", fontsize=10)
    fig.tight_layout()
    return fig


def front_html(completed: Sequence[FrozenTrial], front: Sequence[FrozenTrial], names: Mapping[int, str],
               teacher: Mapping[str, float] | None = None, recommended: int | None = None) -> str | None:
    """An interactive page (plotly, self-contained): accuracy against size and against latency, and the three
    together in 3-D; every trial hoverable with its run's name (``names``: by trial number), the front and the
    recommended one marked."""
    if not completed:
        return None
    q = quality_of(teacher or records.metrics(completed[0])).metric
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=3, column_widths=[0.3, 0.3, 0.4],
                        specs=[[{"type": "xy"}, {"type": "xy"}, {"type": "scene"}]],
                        subplot_titles=(f"{q} vs size", f"{q} vs latency", "all three"))
    members = {t.number for t in front}
    groups = (("other trials", [t for t in completed if t.number not in members], "#b0b0b0", 6),
              ("Pareto front", list(front), "#d62728", 9),
              ("recommended", [t for t in front if t.number == recommended], "#1f77b4", 14))
    for name, trials, colour, size in groups:
        m = [records.metrics(t) for t in trials]
        text = [names[t.number] for t in trials]
        marker = {"color": colour, "size": size}
        for col, metric in ((1, "size_bytes"), (2, "latency_ms")):
            fig.add_trace(go.Scatter(x=[v[metric] for v in m], y=[v[q] for v in m], mode="markers",
                                     name=name, text=text, marker=marker, legendgroup=name, showlegend=col == 1),
                          row=1, col=col)
        fig.add_trace(go.Scatter3d(x=[v["size_bytes"] for v in m], y=[v["latency_ms"] for v in m],
                                   z=[v[q] for v in m], mode="markers", name=name, text=text,
                                   marker={**marker, "size": size / 2}, legendgroup=name, showlegend=False),
                      row=1, col=3)
    if teacher:
        for col, metric in ((1, "size_bytes"), (2, "latency_ms")):
            fig.add_trace(go.Scatter(x=[teacher[metric]], y=[teacher[q]], mode="markers", name="teacher",
                                     marker={"symbol": "star", "size": 14, "color": "black"},
                                     legendgroup="teacher", showlegend=col == 1), row=1, col=col)
    fig.update_xaxes(type="log", title_text="bytes of the deployed file", row=1, col=1)
    fig.update_xaxes(type="log", title_text="batch-1 latency (ms)", row=1, col=2)
    fig.update_yaxes(title_text=f"validation {q}", row=1, col=1)
    fig.update_scenes(xaxis={"type": "log", "title": "bytes"}, yaxis={"type": "log", "title": "latency (ms)"},
                      zaxis={"title": q})
    fig.update_layout(height=600, autosize=True, margin={"l": 50, "r": 20, "t": 90, "b": 110},
                      title={"text": "Pareto front: grey, every completed trial; red, the Pareto members; blue, the "
                             "recommended one; black star, the teacher.<br><sup>Hover a point for its trial and "
                             "recipe; click a legend entry to hide that group.</sup>"},
                      legend={"orientation": "h", "y": -0.2, "yanchor": "top"})
    # responsive: the page's width, whatever the window; no network needed to open it (plotly.js inside)
    return fig.to_html(include_plotlyjs=True, full_html=True, config={"responsive": True},
                       default_width="100%", default_height="600px")


def hypervolume_figure(values: Sequence[float]) -> Any:
    """The front's hypervolume after each completed trial: how fast the search improved."""
    if not values:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.plot(range(1, len(values) + 1), values, marker="o", markersize=3)
    ax.set_xlabel("completed trials")
    ax.set_ylabel("hypervolume (teacher-scaled)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def close(figure: Any) -> None:
    """Free a figure made by ``front_figure`` or ``hypervolume_figure`` once it is saved."""
    if figure is not None:
        import matplotlib.pyplot as plt

        plt.close(figure)
