"""What a study shows in the MLflow UI before any click: a shared runs-page view and the links that open it.

MLflow's runs page restores a view (filter, sort, columns, charts) from an experiment tag
``mlflow.sharedViewState.<key>`` when its address carries ``?viewStateShareKey=<key>`` — what the page's Share button
writes. Each study gets one such view: its Pareto members sorted by accuracy (a language model's: perplexity), with
its objectives, the test accuracy (perplexity) and the recommended tag as columns, and a chart section plotting
it against every other objective. The format
is the UI's (MLflow 3.x): the JSON of the search facets and UI-state fields it restores; fields left out take its
defaults. (Its scatter charts have linear axes only; ``pareto.html`` on the study's run has log axes.)
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Mapping
from urllib.parse import quote

from squeezer.search.config.objectives import quality_of
from squeezer.search.results.tracking import STUDY_TAG

VIEW_TAG = "mlflow.sharedViewState."
# the UI's "Model training" side (runs, models) rather than its GenAI side; kept per browser once opened
LAYOUT = "workflowType=machine_learning"


def view_key(study: str) -> str:
    """The share key of ``study``'s view: readable, and safe in a tag name and an address."""
    return "squeezer-" + re.sub(r"[^A-Za-z0-9_-]+", "-", study).strip("-")[:200]


def view_tag(study: str) -> str:
    """The experiment tag holding ``study``'s view."""
    return VIEW_TAG + view_key(study)


def study_filter(study: str) -> str:
    """The study's Pareto members and its teacher (tagged ``pareto: reference``)."""
    return f'tags.pareto != "false" and tags.`{STUDY_TAG}` = "{study}"'


RUN_NAME = "attributes.`Run Name`"


def _column(kind: str, name: str) -> str:
    return f"{kind}.`{name}`"


def view_state(study: str, objectives: Mapping[str, str]) -> str:
    """The tag value restoring ``study``'s review view (JSON)."""
    section = str(uuid.uuid5(uuid.NAMESPACE_URL, f"squeezer/{study}"))
    q = quality_of(objectives)
    others = [name for name in objectives if name != q.metric]
    charts = [{"type": "SCATTER", "uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"squeezer/{study}/{name}")),
               "metricSectionId": section, "deleted": False, "isGenerated": False, "runsCountToCompare": 100,
               "displayName": f"{q.metric} vs {name}",
               "xaxis": {"key": name, "type": "METRIC"}, "yaxis": {"key": q.metric, "type": "METRIC"}}
              for name in others]
    metrics = [q.metric, q.test_metric, *others]
    columns = [*(_column("metrics", m) for m in metrics), _column("tags", "recommended")]
    return json.dumps({
        STUDY_TAG: study,  # for `squeezer ui`'s links; the UI restores only the fields it knows
        "searchFilter": study_filter(study),
        "orderByKey": _column("metrics", q.metric),
        "orderByAsc": not q.higher_is_better,
        "selectedColumns": columns,
        "columnOrder": [RUN_NAME, *columns],
        "columnWidths": {RUN_NAME: 330},  # the run's name is its recipe
        "compareRunCharts": charts,
        "compareRunSections": [{"uuid": section, "name": "Pareto front", "display": True, "isReordered": False,
                                "deleted": False, "isGenerated": False}],
        "isAccordionReordered": False,
        "runListHidden": False,
    })


def view_links(url: str, experiment_id: str, study: str) -> tuple[str, str]:
    """The runs page of ``study``'s view: as a table, and as charts."""
    page = f"{url}/#/experiments/{experiment_id}/runs?{LAYOUT}&viewStateShareKey={quote(view_key(study))}"
    return page, f"{page}&compareRunsMode=CHART"


def experiment_links(tracking_uri: str, url: str) -> list[str]:
    """For each Squeezer experiment in the store: its page, and each study's review view (table and charts)."""
    from mlflow.tracking import MlflowClient

    from squeezer.search.locking import absolute

    lines = []
    for experiment in MlflowClient(absolute(tracking_uri)).search_experiments(filter_string="name LIKE 'squeezer-%'"):
        lines.append(f"  {experiment.name}: {url}/#/experiments/{experiment.experiment_id}/runs?{LAYOUT}")
        for key in sorted(experiment.tags):
            if key.startswith(VIEW_TAG + "squeezer-"):
                study = json.loads(experiment.tags[key])[STUDY_TAG]
                table, charts = view_links(url, experiment.experiment_id, study)
                lines += [f"    study {study}, Pareto front: {table}", f"      as charts: {charts}"]
    return lines
