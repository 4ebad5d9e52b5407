"""The simple model a user compares a text study with: TF-IDF word n-grams and a logistic regression (scikit-learn),
trained on the study's training texts and measured as a student is.

Accuracy on the validation and test texts; ``size_bytes``, the bytes of its saved form (the fitted pipeline pickled,
as ``joblib.dump`` would write it); ``latency_ms``, the median time of one text's prediction, its vectorisation
included, on one thread. The regularisation strength is chosen on the validation texts, as a user tuning it would.

Students can only learn what their teachers know. Where the baseline beats the teacher on the validation texts, it
teaches too (``as_teacher``): its cross-fitted class probabilities join the teachers' soft labels, combined as
several teachers' are (``distill.ensemble``), which the search then chooses — ``none`` (the teacher alone), ``mean``
(averaged) or ``confidence`` (each text's labels weighted by each teacher's confidence) — unless the config fixes it.
"""

from __future__ import annotations

import pickle
import statistics
import time
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

if TYPE_CHECKING:
    from squeezer.compressors.distill.teacher_outputs import Known
    from squeezer.search.config.experiment import ExperimentConfig
    from squeezer.search.data import Splits

#: The multi-teacher combinations searched once the baseline teaches (``distill.ensemble``).
ENSEMBLES = ("none", "mean", "confidence")

#: The regularisation strengths tried (the one with the best validation accuracy is kept).
STRENGTHS = (1.0, 10.0, 100.0)
TIMED_TEXTS = 200


def fit(texts: Sequence[str], labels: np.ndarray, strength: float) -> Any:
    """A TF-IDF (unigrams and bigrams, sublinear term frequency) + logistic regression pipeline fitted on ``texts``."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    model = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2 if len(texts) > 2000 else 1,
                                          dtype=np.float32),
                          LogisticRegression(C=strength, max_iter=2000))
    return model.fit(list(texts), labels)


def measure(splits: Splits) -> dict[str, float] | None:
    """The baseline's metrics on ``splits`` (None when the data has no texts: a streamed file)."""
    from threadpoolctl import threadpool_limits

    t = splits.texts
    if t is None:
        return None
    y_val, y_test = splits.val_y.numpy(), splits.test_y.numpy()
    try:
        models = [fit(t.train, splits.train_y.numpy(), c) for c in STRENGTHS]
    except ValueError as err:  # e.g. texts of one-letter words only: no vocabulary for TF-IDF
        raise Unmeasured(str(err).splitlines()[0]) from None
    scores = [float((m.predict(t.val) == y_val).mean()) for m in models]
    best = int(np.argmax(scores))
    model = models[best]
    with threadpool_limits(1):
        model.predict(t.val[:1])
        times = []
        for text in t.val[:TIMED_TEXTS]:
            start = time.perf_counter()
            model.predict([text])
            times.append(time.perf_counter() - start)
    vectorizer = model.steps[0][1]
    vectorizer.stop_words_ = None  # the vocabulary it dropped (min_df): introspection only, not needed to predict
    return {"accuracy": scores[best], "test_accuracy": float((model.predict(t.test) == y_test).mean()),
            "size_bytes": float(len(pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL))),
            "latency_ms": 1000 * statistics.median(times), "C": STRENGTHS[best]}


def cross_fitted(texts: Sequence[str], labels: np.ndarray, classes: int, strength: float, folds: int = 5,
                 seed: int = 0) -> np.ndarray:
    """The baseline's log-probabilities on its own training ``texts``, cross-fitted: each text's from a model fitted
    on the other folds (stratified), which never saw it — soft targets that say what TF-IDF knows of a text, not
    that it memorised it. Shape ``[len(texts), classes]``; a class a fold's model never saw gets a tiny
    probability."""
    from sklearn.model_selection import StratifiedKFold

    texts = np.asarray(list(texts), dtype=object)
    probs = np.full((len(texts), classes), 1e-6)
    counts = np.bincount(labels)
    smallest = int(counts[counts > 0].min())
    splitter = StratifiedKFold(n_splits=max(2, min(folds, smallest)), shuffle=True, random_state=seed)
    for fitted_on, held_out in splitter.split(texts, labels):
        model = fit(texts[fitted_on], labels[fitted_on], strength)
        probs[np.ix_(held_out, model.classes_)] = model.predict_proba(list(texts[held_out]))
    probs /= probs.sum(1, keepdims=True)
    return np.log(np.clip(probs, 1e-6, 1.0)).astype(np.float32)


def as_teacher(config: ExperimentConfig, splits: Splits, baseline: Mapping[str, float],
               teacher_accuracy: float) -> tuple[ExperimentConfig, Known | None, str]:
    """Where the ``baseline`` beats the teacher's validation accuracy and a distillation step can use it: the config
    with each such step's ``ensemble`` searched over ``ENSEMBLES`` (where the config leaves it), the baseline as a
    teacher known by its cross-fitted logits on the training texts, and what to tell the user; else the config
    unchanged, None, and why not (empty when there is nothing to say)."""
    import dataclasses

    import torch

    from squeezer.compressors.distill.teacher_outputs import Known
    from squeezer.spaces.knobs import Choice

    steps = [step for step in config.pipeline if step.name == "distill" and teaches(step.space)]
    if splits.texts is None or baseline["accuracy"] <= teacher_accuracy or not steps:
        return config, None, ""
    pipeline = tuple(dataclasses.replace(step, space={**step.space, "ensemble": Choice(ENSEMBLES)})
                     if step in steps and "ensemble" not in step.space else step for step in config.pipeline)
    knob = next(step.space["ensemble"] for step in pipeline if step.name == "distill" and "ensemble" in step.space)
    choices = knob.extremes()  # a fixed value, or the choices
    said = (f"TF-IDF baseline: validation accuracy {baseline['accuracy']:.4f} beats the teacher's "
            f"{teacher_accuracy:.4f}: it teaches too, its cross-fitted class probabilities beside the teacher's "
            f"soft labels (distill.ensemble {' | '.join(map(str, choices))}")
    if choices == ["none"]:  # the config keeps the teacher alone: nothing to fit
        return config, None, said + ": the teacher alone, so the baseline is not used)"
    logits = cross_fitted(splits.texts.train, splits.train_y.numpy(), splits.num_classes, baseline["C"],
                          seed=config.seed)
    return dataclasses.replace(config, pipeline=pipeline), Known(torch.from_numpy(logits)), said + ")"


def teaches(space: Mapping[str, Any]) -> bool:
    """Whether a distillation step's space distils from teachers: its method kd (the default), not searched."""
    method = space.get("method")
    return method is None or getattr(method, "value", None) == "kd"


class Unmeasured(RuntimeError):
    """The baseline cannot be fitted on these texts; the message says why."""


def beaten_by(members: Sequence[tuple[int, Mapping[str, float]]], baseline: Mapping[str, float]) -> list[int]:
    """The members (trial number, metrics) at least as accurate as the baseline at no more bytes."""
    return [number for number, m in members
            if m["accuracy"] >= baseline["accuracy"] and m["size_bytes"] <= baseline["size_bytes"]]


def verdict(members: Sequence[tuple[int, Mapping[str, float]]], baseline: Mapping[str, float]) -> str:
    """One line: which members match the baseline's accuracy at no more bytes, or that none does."""
    found = beaten_by(members, baseline)
    if found:
        return (f"TF-IDF baseline matched: trial(s) {', '.join(map(str, found))} at least as accurate "
                f"({baseline['accuracy']:.4f}) at no more bytes")
    return (f"no member is at least as accurate as the TF-IDF baseline ({baseline['accuracy']:.4f}) at no more bytes "
            f"({baseline['size_bytes'] / 1e6:.2f} MB)")


__all__ = ["ENSEMBLES", "STRENGTHS", "Unmeasured", "as_teacher", "beaten_by", "cross_fitted", "fit", "measure",
           "verdict"]
