"""The simple model a user compares a text study with: TF-IDF word n-grams and a logistic regression (scikit-learn),
trained on the study's training texts and measured as a student is.

Accuracy on the validation and test texts; ``size_bytes``, the bytes of its saved form (the fitted pipeline pickled,
as ``joblib.dump`` would write it); ``latency_ms``, the median time of one text's prediction, its vectorisation
included, on one thread. The regularisation strength is chosen on the validation texts, as a user tuning it would.
"""

from __future__ import annotations

import pickle
import statistics
import time
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

if TYPE_CHECKING:
    from squeezer.search.data import Splits

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


__all__ = ["STRENGTHS", "Unmeasured", "beaten_by", "fit", "measure", "verdict"]
