"""How trials and the Pareto front are shown: progress lines, the front as a table, CSV and plot."""

from __future__ import annotations

import csv
import io
from typing import Any, Mapping, Sequence

from optuna.trial import FrozenTrial

from squeezer.spaces import plain_names

COLUMNS = ("accuracy", "size_bytes", "latency_ms", "latency_p90_ms", "throughput", "params")


def fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def metrics_line(metrics: Mapping[str, float]) -> str:
    return (f"accuracy={metrics['accuracy']:.4f} size={human_bytes(metrics['size_bytes'])} "
            f"latency={metrics['latency_ms']:.3f}ms")


def recipe(params: Mapping[str, Any]) -> str:
    """The trial's choices in one short string, e.g. ``student.family=mlp prune.ratio=0.31 quantize.bits=8``."""
    return " ".join(f"{k}={fmt(v)}" for k, v in plain_names(params).items())


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB"):
        if n < 1024 or unit == "MB":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024
    return f"{n:.1f}GB"


def front_rows(front: Sequence[FrozenTrial]) -> list[dict[str, Any]]:
    """One row per Pareto trial, best accuracy first: its number, metrics and parameters."""
    rows = [{"trial": t.number, **{c: t.user_attrs.get("metrics", {}).get(c) for c in COLUMNS}, **t.params}
            for t in front]
    return sorted(rows, key=lambda r: -(r["accuracy"] or 0))


def front_csv(front: Sequence[FrozenTrial]) -> str:
    rows = front_rows(front)
    fields = list(dict.fromkeys(k for row in rows for k in row)) or ["trial", *COLUMNS]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def front_table(front: Sequence[FrozenTrial]) -> str:
    """A fixed-width table: trial, accuracy, size, latency, then the trial's recipe."""
    lines = [f"{'trial':>5} {'accuracy':>8} {'size_bytes':>10} {'latency_ms':>10}  recipe"]
    for row in front_rows(front):
        params = {k: v for k, v in row.items() if k not in ("trial", *COLUMNS)}
        lines.append(f"{row['trial']:>5} {row['accuracy']:>8.4f} {row['size_bytes']:>10.0f} "
                     f"{row['latency_ms']:>10.4f}  {recipe(params)}")
    return "\n".join(lines)


def front_figure(completed: Sequence[FrozenTrial], front: Sequence[FrozenTrial],
                 teacher: Mapping[str, float] | None = None) -> Any:
    """Accuracy against size and against latency; every completed trial in grey, the front in colour."""
    if not completed:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    members = {t.number for t in front}
    for ax, metric, label in ((axes[0], "size_bytes", "size on disk (bytes, log)"),
                              (axes[1], "latency_ms", "batch-1 latency (ms, log)")):
        for subset, style in (([t for t in completed if t.number not in members], dict(c="0.7", s=18)),
                              (sorted(front, key=lambda t: t.user_attrs["metrics"][metric]),
                               dict(c="tab:red", s=36, label="Pareto front"))):
            xs = [t.user_attrs["metrics"][metric] for t in subset]
            ys = [t.user_attrs["metrics"]["accuracy"] for t in subset]
            ax.scatter(xs, ys, **style)
        if teacher:
            ax.scatter([teacher[metric]], [teacher["accuracy"]], marker="*", s=160, c="k", label="teacher")
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("validation accuracy")
    fig.suptitle("Pareto front over all objectives (each panel is a 2-D view of it)", fontsize=10)
    axes[1].legend(loc="lower right")
    fig.tight_layout()
    return fig


def close(figure: Any) -> None:
    """Free a figure made by ``front_figure`` once it is saved."""
    if figure is not None:
        import matplotlib.pyplot as plt

        plt.close(figure)
