"""The user's own model and data: a residual network from the user's Python file as the teacher, the teacher itself
as a student (pruned through Torch-Pruning's dependency graph, so its residual channels stay consistent, and
quantized), an image folder of PNGs as the data; exported, the student takes the images' raw pixels. And every way
a user's model can be wrong, in one line."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient
from PIL import Image

from squeezer.search import data, models
from squeezer.search.cli import main
from squeezer.search.config.objectives import ERRORS
from squeezer.search.data.augment import Augment
from squeezer.search.errors import ConfigError
from squeezer.search.models import registry
from squeezer.search.runtime import export
from squeezer.search.runtime.ort import OnnxModel
from squeezer.search.runtime.preprocess import onnx_metadata

from conftest import install_plugin, load_data, one_line
from squeezer.search.config.data_section import data_section

MODELS = '''
import torch
from torch import nn


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)

    def forward(self, x):
        return torch.relu(x + self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))))


class Residual(nn.Module):
    def __init__(self, num_classes, width):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, width, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(width),
                                  nn.ReLU())
        self.blocks = nn.Sequential(Block(width), Block(width))
        self.head = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)).mean((2, 3)))


def residual(num_classes, width=16):
    return Residual(num_classes, width)


def three_outputs(width=8):
    return nn.Sequential(nn.Flatten(), nn.Linear(256, 5))


def broken(width=8):
    raise RuntimeError("no GPU here")


def not_a_model():
    return "a model"


NOT_CALLABLE = 3
'''


def stripes(where: Path, per_class: int, seed: int) -> Path:
    """16x16 grayscale PNGs in class folders: horizontal, vertical or diagonal stripes, with noise."""
    rng = np.random.default_rng(seed)
    grid = np.indices((16, 16))
    patterns = {"horizontal": grid[0] % 4 < 2, "vertical": grid[1] % 4 < 2, "diagonal": (grid[0] + grid[1]) % 4 < 2}
    for name, pattern in patterns.items():
        (where / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = np.clip(pattern * 160 + rng.normal(60, 40, (16, 16)), 0, 255).astype(np.uint8)
            Image.fromarray(np.roll(pixels, rng.integers(4), axis=rng.integers(2))).save(where / name / f"{i}.png")
    return where


def experiment(where: Path, **student: object) -> dict:
    (where / "my_models.py").write_text(MODELS)
    return {
        "name": "mine", "seed": 0,
        "data": {"path": str(stripes(where / "train", 60, 0)), "test_path": str(stripes(where / "test", 20, 1)),
                 "val_fraction": 0.2},
        "teacher": {"model": "my_models.py:residual", "kwargs": {"width": 16}, "epochs": 6, "lr": 0.01},
        "student": student or {"family": "teacher"},
        "pipeline": [{"distill": {"epochs": 2, "lr": 0.003}}, {"prune": {"ratio": 0.5, "finetune_epochs": 1}},
                     {"quantize": {"bits": {"choice": [32, 8]}}}],
        "search": {"sampler": "random", "trials": 2, "scheduler": "none"},
        "measure": {"repeats": 5, "warmup": 1, "batch": 8},
    }


def test_the_users_residual_network_compressed_as_its_own_student_takes_raw_pixels(tmp_path: Path) -> None:
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump({**experiment(tmp_path), "search": {"sampler": "random", "trials": 4,
                                                                       "scheduler": "none"}}))
    assert main(["search", str(path)]) == 0
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("squeezer-mine").experiment_id],
                              "tags.`squeezer.role` = 'trial'", order_by=["params.`squeezer.trial`"])
    assert len(runs) == 4 and all(r.info.status == "FINISHED" for r in runs)
    trial = {int(r.data.tags["squeezer.trial"]): r for r in runs}

    # the obvious baseline ran first: the teacher as trained, quantized without training, fp16 and int8
    assert [trial[n].data.params.get("baseline.recipe") for n in range(4)] == ["fp16", "int8", None, None]
    assert trial[0].info.run_name == "t00 teacher as trained · fp16 (baseline)"
    teacher_bytes = client.get_run(runs[0].data.tags["mlflow.parentRunId"]).data.metrics["teacher.size_bytes"]
    assert all(trial[n].data.metrics["size_bytes"] < teacher_bytes for n in (0, 1))
    # ... and the front contains it or a student that dominates it (no worse within the measurements' errors)
    objectives = {"accuracy": 1, "size_bytes": -1, "latency_ms": -1}
    front = [r for r in runs if r.data.tags["pareto"] == "true"]

    def error(run, name: str) -> float:
        return run.data.metrics.get(ERRORS.get(name, ""), 0.0)
    for base in (trial[0], trial[1]):
        assert any(all(sign * (m.data.metrics[k] - base.data.metrics[k]) >= -math.hypot(error(m, k), error(base, k))
                       for k, sign in objectives.items()) for m in front)

    member = front[-1]
    assert main(["export", "--study-name", "mine", "--trial", member.data.tags["squeezer.trial"], "--out",
                 str(tmp_path / "onnx"), "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"]) == 0
    pixels, truth = raw_test_images(tmp_path)  # the user's test images, read as they are
    deployed = OnnxModel(tmp_path / "onnx" / "model.onnx")
    classes = np.array(onnx_metadata(onnx.load(str(tmp_path / "onnx" / "model.onnx")))["classes"])
    assert list(classes) == ["diagonal", "horizontal", "vertical"]
    accuracy = (classes[deployed.predict(pixels).argmax(1).numpy()] == truth).mean()
    assert accuracy == pytest.approx(member.data.metrics["test_accuracy"], abs=1e-6)
    readme = (tmp_path / "onnx" / "README.md").read_text()  # says how to feed the PNG files, as read above
    assert "pixel values as decoded" in readme and "0-255 for 8-bit PNG/JPEG" in readme

    # a searched student's torch export rebuilds the user's network from their factory, with the pruned widths
    assert main(["export", "--study-name", "mine", "--trial", "2", "--out", str(tmp_path / "torch"), "--format",
                 "torch", "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"]) == 0
    rebuilt = export.load(tmp_path / "torch")
    teacher_params = 2 * 2 * 16 * 16 * 9 + 16 * 9  # the blocks' and stem's convolutions at width 16
    convs = sum(m.weight.numel() for m in rebuilt.modules() if isinstance(m, torch.nn.Conv2d))
    assert convs < 0.5 * teacher_params  # half the channels of every coupled group removed
    with torch.no_grad():
        assert rebuilt(pixels[:4]).shape == (4, 3)


def raw_test_images(where: Path) -> tuple[torch.Tensor, np.ndarray]:
    """The user's test images as they are on disk (0-255 pixels) and their classes (the folder names)."""
    files = sorted((where / "test").rglob("*.png"))
    pixels = torch.from_numpy(np.stack([np.asarray(Image.open(f), dtype=np.float32)[None] for f in files]))
    return pixels, np.array([f.parent.name for f in files])


@pytest.mark.skipif(importlib.util.find_spec("torchvision") is None,
                    reason="torchvision is not in the default install: PyPI's build does not load beside the CPU "
                    "torch (pip install 'squeezer[vision]' with the torchvision built for your torch)")
def test_torchvisions_resnet_is_the_teacher_compressed_as_itself_and_distilled_into_its_mobilenet(
        tmp_path: Path) -> None:
    config = {**experiment(tmp_path), "teacher": {"torchvision": "resnet18", "epochs": 3, "lr": 0.003}}
    config["search"]["trials"] = 3  # the fp16 and int8 baselines, then the ResNet pruned by half
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["search", str(path)]) == 0
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    runs = {int(r.data.tags["squeezer.trial"]): r for r in client.search_runs(
        [client.get_experiment_by_name("squeezer-mine").experiment_id], "tags.`squeezer.role` = 'trial'")}
    assert sorted(runs) == [0, 1, 2] and all(r.info.status == "FINISHED" for r in runs.values())
    assert main(["export", "--study-name", "mine", "--trial", "2", "--out", str(tmp_path / "pruned"),
                 "--tracking-uri", uri]) == 0
    pixels, truth = raw_test_images(tmp_path)
    classes = np.array(onnx_metadata(onnx.load(str(tmp_path / "pruned" / "model.onnx")))["classes"])
    predicted = classes[OnnxModel(tmp_path / "pruned" / "model.onnx").predict(pixels).argmax(1).numpy()]
    assert (predicted == truth).mean() == pytest.approx(runs[2].data.metrics["test_accuracy"], abs=1e-6)
    assert runs[2].data.metrics["size_bytes"] < 0.5 * runs[0].data.metrics["size_bytes"]  # half the fp16 bytes

    # torchvision's MobileNetV2 as the student, its width searched, distilled from the same (cached) teacher
    config = {**config, "name": "mobile", "student": {"torchvision": "mobilenet_v2",
                                                      "kwargs": {"width_mult": {"choice": [0.25, 0.5]}}}}
    path.write_text(yaml.safe_dump({**config, "search": {**config["search"], "trials": 1}}))
    assert main(["search", str(path)]) == 0
    assert main(["export", "--study-name", "mobile", "--trial", "0", "--out", str(tmp_path / "mobile"), "--format",
                 "torch", "--tracking-uri", uri]) == 0
    rebuilt = export.load(tmp_path / "mobile")
    assert any(type(m).__name__ == "InvertedResidual" for m in rebuilt.modules())
    with torch.no_grad():
        assert rebuilt(pixels[:4]).shape == (4, 3)


def test_an_image_folder_reads_classes_from_folder_names_and_keeps_raw_pixels(tmp_path: Path) -> None:

    splits = load_data({"path": str(stripes(tmp_path / "imgs", 10, 0)), "val_fraction": 0.2, "test_fraction": 0.2},
                       seed=0)
    assert splits.classes == ("diagonal", "horizontal", "vertical") and splits.input_shape == (1, 16, 16)
    assert float(splits.val_raw.max()) > 100 and splits.standardize.shape == (1, 1, 1)


def image_list(where: Path, suffix: str = ".csv", rows: list[dict] | None = None) -> Path:
    """A file listing the training images as a user keeps one: their paths relative to the file, and classes."""
    import pandas as pd

    root = where / "train"
    rows = rows if rows is not None else [{"file": str(f.relative_to(root)), "class": f.parent.name}
                                          for f in sorted(root.rglob("*.png"))]
    listing = root / f"list{suffix}"
    frame = pd.DataFrame(rows)
    if suffix == ".parquet":
        frame.to_parquet(listing)
    elif suffix == ".jsonl":
        frame.to_json(listing, orient="records", lines=True)
    else:
        frame.to_csv(listing, index=False)
    return listing


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_a_file_listing_image_paths_and_classes_is_the_same_data_as_the_folder(suffix: str, tmp_path: Path) -> None:
    stripes(tmp_path / "train", 10, 0)
    folder = load_data({"path": str(tmp_path / "train"), "val_fraction": 0.2, "test_fraction": 0.2}, seed=0)
    listing = {"path": str(image_list(tmp_path, suffix)), "image_column": "file", "label_column": "class"}
    assert data.preview(data_section(listing, Path("."))).input_shape == (1, 16, 16)  # from the listed files' headers
    listed = load_data({**listing, "val_fraction": 0.2, "test_fraction": 0.2}, seed=0)
    assert listed.classes == folder.classes
    assert np.array_equal(np.asarray(listed.train_x), np.asarray(folder.train_x))
    assert np.array_equal(listed.test_y, folder.test_y)


def test_a_study_reads_its_images_from_a_csv_list(tmp_path: Path) -> None:
    config = experiment(tmp_path)
    config["data"] = {**config["data"], "path": str(image_list(tmp_path)), "image_column": "file",
                      "label_column": "class", "image_size": 12}
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["search", str(path), "--trials", "1"]) == 0
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    [run] = client.search_runs([client.get_experiment_by_name("squeezer-mine").experiment_id],
                               "tags.`squeezer.role` = 'trial'")
    assert run.info.status == "FINISHED" and run.data.metrics["test_accuracy"] > 0.5


def listed_missing(where: Path) -> None:
    image_list(where, rows=[{"file": "vertical/0.png", "class": "vertical"}, {"file": "nowhere.png", "class": "x"}])


def listed_empty_cell(where: Path) -> None:
    image_list(where, rows=[{"file": "vertical/0.png", "class": "vertical"}, {"file": "", "class": "horizontal"}])


def listed_without_column(where: Path) -> None:
    image_list(where, rows=[{"path": "vertical/0.png", "class": "vertical"}])


LISTING = {"path": "train/list.csv", "image_column": "file", "label_column": "class"}


def bad_image(where: Path) -> None:
    (where / "train" / "vertical" / "0.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")


def processorless_vit(where: Path) -> None:
    """An image classifier's directory without its preprocessor_config.json."""
    (where / "vit").mkdir()
    (where / "vit" / "config.json").write_text('{"architectures": ["ViTForImageClassification"]}')


HF = {"hf": "vit", "model": None, "kwargs": None, "epochs": None, "lr": None}


def cut_short(where: Path) -> None:
    """An image whose header reads but whose pixels are cut off."""
    image = where / "train" / "vertical" / "0.png"
    image.write_bytes(image.read_bytes()[:60])


def resized(where: Path) -> None:
    Image.new("L", (20, 12)).save(where / "train" / "vertical" / "odd.png")


def empty_class(where: Path) -> None:
    (where / "train" / "empty").mkdir()


def save_program(where: Path, batch: int | None = None) -> Path:
    """The user's small CNN for 16x16 grayscale images, exported with ``torch.export`` (a batch of any size, unless
    ``batch`` fixes one) and saved as ``model.pt2``."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
                              torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten(), torch.nn.Linear(32, 3)).eval()
    example = torch.zeros(batch or 2, 1, 16, 16)
    shapes = None if batch else ({0: torch.export.Dim("batch")},)
    torch.export.save(torch.export.export(net, (example,), dynamic_shapes=shapes), where / "model.pt2")
    return where / "model.pt2"


def test_a_torch_export_program_is_the_teacher_as_exported(tmp_path: Path) -> None:
    save_program(tmp_path)
    config = experiment(tmp_path, family={"choice": {"teacher": {}, "cnn": {"channels": 4, "hidden": 8}}})
    config["teacher"] = {"program": "model.pt2"}
    config["pipeline"] = [{"distill": {"epochs": 1}}, {"quantize": {"bits": 8}}]
    config["search"]["trials"] = 3
    (tmp_path / "experiment.yaml").write_text(yaml.safe_dump(config))
    assert main(["search", str(tmp_path / "experiment.yaml")]) == 0
    assert not (tmp_path / "cache" / "teachers").exists()  # used as exported: nothing trained, nothing cached
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("squeezer-mine").experiment_id],
                              "tags.`squeezer.role` = 'trial'")
    assert len(runs) == 3 and all(r.info.status == "FINISHED" for r in runs)
    assert sorted(r.data.params.get("baseline.recipe", "") for r in runs) == ["", "fp16", "int8"]
    assert main(["export", "--study-name", "mine", "--trial", "1", "--out", str(tmp_path / "int8"),
                 "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"]) == 0
    assert OnnxModel(tmp_path / "int8" / "model.onnx").predict(torch.zeros(5, 1, 16, 16)).shape == (5, 3)


def text_program(where: Path) -> None:
    (where / "model.pt2").write_text("not a program")


def batch_one_program(where: Path) -> None:
    save_program(where, batch=1)


PROGRAM = {"program": "model.pt2", "model": None, "kwargs": None, "epochs": None, "lr": None}


BAD = [  # (name, section, settings merged into it or (replace) taking its place, files, the key named)
    ("factory file missing", "teacher", {"model": "nowhere.py:residual"}, None, "teacher.arch.model"),
    ("factory module missing", "teacher", {"model": "no_such_package.models:resnet"}, None, "teacher.arch.model"),
    ("factory function missing", "teacher", {"model": "my_models.py:resnet"}, None, "teacher.arch.model"),
    ("factory not callable", "teacher", {"model": "my_models.py:NOT_CALLABLE"}, None, "teacher.arch.model"),
    ("factory raising", "teacher", {"model": "my_models.py:broken"}, None, "teacher.arch.model"),
    ("factory returning a string", "teacher", {"model": "my_models.py:not_a_model", "kwargs": {}}, None,
     "teacher.arch.model"),
    ("a reference without a function", "teacher", {"model": "my_models.py"}, None, "teacher.arch.model"),
    ("an unknown factory argument", "teacher", {"kwargs": {"depth": 3}}, None, "teacher.arch.depth"),
    ("kwargs not a mapping", "teacher", {"kwargs": [16]}, None, "teacher.kwargs"),
    ("model and family both", "teacher", {"family": "mlp"}, None, "teacher.model"),
    ("output not one score per class", "teacher", {"model": "my_models.py:three_outputs"}, None, "teacher"),
    ("weights of another model", "teacher", {"weights": "other.pt"}, None, "teacher.path"),
    ("weights and path both", "teacher", {"weights": "other.pt", "path": "other.pt"}, None, "teacher.weights"),
    ("student factory missing", "student", {"factory": "my_models.py:resnet", "family": None}, None,
     "student.model"),
    ("teacher student with settings", "student", {"width": 4}, None, "student.width"),
    ("a program that is not one", "teacher", PROGRAM, text_program, "teacher.arch.file"),
    ("a program missing", "teacher", PROGRAM, None, "teacher.program"),
    ("a program for a batch of one", "teacher", PROGRAM, batch_one_program, "teacher"),
    ("a program trained again", "teacher", {**PROGRAM, "epochs": 3}, save_program, "teacher.epochs"),
    ("a program pruned", "teacher", PROGRAM, save_program, "prune.ratio"),
    ("torchvision model unknown", "teacher", {"model": None, "kwargs": None, "torchvision": "resnet7"}, None,
     "teacher.arch.name"),
    ("torchvision weights downloaded", "teacher", {"model": None, "kwargs": {"weights": "DEFAULT"},
                                                   "torchvision": "resnet18"}, None, "teacher.arch.weights"),
    ("torchvision setting refused", "student", {"family": None, "torchvision": "mobilenet_v2",
                                                "kwargs": {"depth": 3}}, None, "student.name"),
    ("a Hugging Face directory missing", "teacher", HF, None, "teacher.arch.model"),
    ("an image classifier without its processor", "teacher", HF, processorless_vit, "teacher.arch.model"),
    ("a listed image missing", "data", LISTING, listed_missing, "data.path"),
    ("a listed image path empty", "data", LISTING, listed_empty_cell, "data.image_column"),
    ("a list without its image column", "data", LISTING, listed_without_column, "data.image_column"),
    ("image_column on an npz", "data", {"path": None, "test_path": None, "name": "digits", "image_column": "file"},
     None, "data.image_column"),
    ("a corrupt image", "data", {}, bad_image, "data.path"),
    ("an image cut short", "data", {}, cut_short, "data.path"),
    ("mixed image sizes", "data", {}, resized, "data.image_size"),
    ("an empty class folder", "data", {}, empty_class, "data.path"),
    ("image_size of one pixel", "data", {"image_size": 1}, None, "data.image_size"),
    ("augment unknown", "data", {"augment": {"rotate": 15}}, None, "data.augment.rotate"),
    ("augment not a mapping", "data", {"augment": ["flip"]}, None, "data.augment"),
    ("augment flip not a bool", "data", {"augment": {"flip": "yes"}}, None, "data.augment.flip"),
    ("augment crop the whole image", "data", {"augment": {"crop": 16}}, None, "data.augment.crop"),
    ("augment crop negative", "data", {"augment": {"crop": -2}}, None, "data.augment.crop"),
    ("channels 2", "data", {"channels": 2}, None, "data.channels"),
    ("image_size on an npz", "data", {"path": None, "test_path": None, "name": "digits", "image_size": 8}, None,
     "data.image_size"),
]


@pytest.mark.parametrize("name, section, settings, files, key", BAD, ids=[b[0] for b in BAD])
def test_a_users_model_or_image_folder_that_cannot_work_is_one_line(name: str, section: str, settings: dict, files,
                                                                    key: str, tmp_path: Path, capsys) -> None:
    config = experiment(tmp_path)
    config[section] = {k: v for k, v in {**config[section], **settings}.items() if v is not None}
    if "weights" in settings:
        torch.save({"fc.weight": torch.zeros(3, 3)}, tmp_path / "other.pt")
    if files:
        files(tmp_path)
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(config))
    before = sorted(p.name for p in tmp_path.rglob("*"))
    assert main(["search", str(path), "--trials", "1"]) == 2
    one_line(capsys.readouterr().err, key)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_a_packages_student_family_is_found_through_its_entry_point(tmp_path: Path, monkeypatch) -> None:
    install_plugin(tmp_path, monkeypatch, "squeezer_family_demo",
                   "from torch import nn\n"
                   "def tiny(input_shape, num_classes, width=8):\n"
                   "    return nn.Sequential(nn.Flatten(), nn.LazyLinear(width), nn.ReLU(),\n"
                   "                         nn.Linear(width, num_classes))\n",
                   "squeezer.families", "tiny = squeezer_family_demo:tiny")
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    assert "tiny" in registry.available() and "squeezer_family_demo" not in sys.modules  # named, not imported
    built = models.build({"family": "tiny", "width": 4}, (1, 8, 8), 10)
    assert built(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
    with pytest.raises(ConfigError, match="student.depth: is not a setting of family 'tiny'"):
        models.build({"family": "tiny", "depth": 2}, (1, 8, 8), 10)


def test_a_family_registered_from_python_is_named_like_a_built_in_one(monkeypatch) -> None:
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))

    @models.register("linear")
    def linear(input_shape, num_classes):
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(int(np.prod(input_shape)), num_classes))

    assert models.build({"family": "linear"}, (4,), 3)(torch.zeros(1, 4)).shape == (1, 3)
    with pytest.raises(ConfigError) as err:
        models.build({"family": "nope"}, (4,), 3)
    assert "'linear'" in str(err.value) and "squeezer.families" in str(err.value)


def test_augmentation_flips_and_shifts_each_image_of_a_training_batch() -> None:
    torch.manual_seed(0)
    images = torch.arange(64 * 2 * 6 * 6, dtype=torch.float32).reshape(64, 2, 6, 6)
    flipped = Augment(flip=True)(images)
    same = (flipped == images).flatten(1).all(1)
    assert 10 < int(same.sum()) < 54 and (flipped[~same] == images[~same].flip(3)).all()
    shifted = Augment(crop=2)(images)
    assert shifted.shape == images.shape
    for image, original in zip(shifted, images, strict=True):  # a 6x6 window of the image padded by 2 with zeros
        padded = torch.nn.functional.pad(original, (2, 2, 2, 2))
        assert any((padded[:, a:a + 6, b:b + 6] == image).all() for a in range(5) for b in range(5))
    assert not (shifted == images).all()


def test_an_augmented_study_trains_its_teacher_on_augmented_batches_and_caches_it_apart(tmp_path: Path) -> None:
    config = experiment(tmp_path)
    config["pipeline"] = [{"distill": {"epochs": 1}}, "quantize"]
    for augment in (None, {"flip": True, "crop": 2}):
        (tmp_path / "experiment.yaml").write_text(yaml.safe_dump(
            {**config, "name": f"mine{bool(augment)}", "data": {**config["data"], "augment": augment}}))
        assert main(["search", str(tmp_path / "experiment.yaml"), "--trials", "1"]) == 0
    assert len(list((tmp_path / "cache" / "teachers").glob("*.pt"))) == 2


def test_an_image_folder_is_memory_mapped_and_trains_as_the_same_images_held_in_memory(tmp_path: Path) -> None:
    """The folder is decoded once into a uint8 array on disk, its splits written to float32 files and memory-mapped;
    a trial on it gives what a trial on the same images in an .npz (read into memory) gives."""
    config = experiment(tmp_path)
    files = sorted(p for p in (tmp_path / "train").rglob("*.png"))  # the folder's order: class folders, then files
    np.savez(tmp_path / "same.npz", X=np.stack([np.asarray(Image.open(f), dtype=np.float32)[None] for f in files]),
             y=np.array([f.parent.name for f in files]))
    config.update(student={"family": "cnn", "channels": 4, "hidden": 8},
                  pipeline=[{"distill": {"epochs": 1}}, {"quantize": {"bits": 8}}])
    metrics = {}
    for name, path in (("folder", tmp_path / "train"), ("memory", tmp_path / "same.npz")):
        (tmp_path / "experiment.yaml").write_text(yaml.safe_dump(
            {**config, "name": name, "data": {"path": str(path), "val_fraction": 0.2, "test_fraction": 0.2}}))
        assert main(["search", str(tmp_path / "experiment.yaml"), "--trials", "1"]) == 0
        client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
        [run] = client.search_runs([client.get_experiment_by_name(f"squeezer-{name}").experiment_id],
                                   "tags.`squeezer.role` = 'trial'")
        metrics[name] = run.data.metrics
    for metric in ("accuracy", "f1_macro", "test_accuracy"):
        assert metrics["folder"][metric] == pytest.approx(metrics["memory"][metric], abs=1e-6), metric

    splits = load_data({"path": str(tmp_path / "train"), "val_fraction": 0.2, "test_fraction": 0.2}, seed=0)
    [mapped] = (tmp_path / "cache" / "images").glob("*.npy")
    assert np.load(mapped, mmap_mode="r").shape == (180, 1, 16, 16)
    for name in ("train_x", "val_x", "test_x", "val_raw", "test_raw"):
        [part] = (tmp_path / "cache" / "splits").glob(f"*/{name}.npy")
        tensor = getattr(splits, name)
        assert mapped_file(tensor) == str(part) and torch.equal(torch.from_numpy(np.load(part)), tensor)


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
def test_a_large_npz_is_memory_mapped_and_splits_into_the_same_values_held_in_memory(save, tmp_path: Path,
                                                                                      monkeypatch) -> None:
    """Stored (np.savez), X is mapped where it lies in the archive; compressed, it is decompressed once into the
    cache, a chunk at a time, and mapped there."""
    from squeezer.search.data import images

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(300, 5)) * [1, 10, 100, 1e3, 1e4], rng.integers(0, 3, 300)
    save(tmp_path / "large.npz", X=x, y=y)
    spec = {"path": str(tmp_path / "large.npz"), "val_fraction": 0.2, "test_fraction": 0.2}
    held = load_data(spec, seed=0)  # small: read into memory
    assert mapped_file(held.train_x) is None
    monkeypatch.setattr(images, "MAP_BYTES", 0)  # "large": any size
    mapped = load_data(spec, seed=0)
    assert mapped_file(mapped.train_x).startswith(str(tmp_path / "cache" / "splits"))
    assert (tmp_path / "cache" / "npz").exists() == (save is np.savez_compressed)
    for name in ("train_x", "val_x", "test_x", "val_raw", "test_raw"):
        assert torch.allclose(getattr(mapped, name), getattr(held, name), rtol=1e-5, atol=1e-5), name
    assert np.allclose(mapped.standardize.std, held.standardize.std)

    save(tmp_path / "large.npz", X=x[:200] * 2, y=y[:200])  # rewritten in place: split anew, not from the cache
    assert len(load_data(spec, seed=0).train_x) < len(mapped.train_x)
    x[7, 2] = np.nan  # a bad value: refused, and a decompressed copy is not left behind
    save(tmp_path / "bad.npz", X=x, y=y)
    before = sorted(p.name for p in (tmp_path / "cache").rglob("*"))
    with pytest.raises(ConfigError, match="finite"):
        load_data({**spec, "path": str(tmp_path / "bad.npz")}, seed=0)
    assert sorted(p.name for p in (tmp_path / "cache").rglob("*")) == before


def test_memory_mapped_splits_reach_worker_processes_of_this_machine_as_their_files(tmp_path: Path) -> None:
    import pickle

    stripes(tmp_path / "train", 60, 0)
    splits = load_data({"path": str(tmp_path / "train"), "val_fraction": 0.2, "test_fraction": 0.2}, seed=0)
    by_value, by_path = pickle.dumps(splits), pickle.dumps(splits.sent_by_path())  # what Ray's workers get
    assert len(by_path) < len(by_value) / 10
    again = pickle.loads(by_path)
    for name in ("train_x", "val_x", "test_x", "val_raw", "test_raw"):
        assert mapped_file(getattr(again, name)) == splits.files[name]
        assert torch.equal(getattr(again, name), getattr(splits, name))
    assert torch.equal(again.train_y, splits.train_y) and again.standardize == splits.standardize


def mapped_file(tensor: torch.Tensor) -> str | None:
    """The file whose memory mapping holds ``tensor``'s data (from /proc/self/maps), or None for anonymous memory."""
    address = tensor.data_ptr()
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split(maxsplit=5)
        start, end = (int(v, 16) for v in fields[0].split("-"))
        if start <= address < end:
            return fields[5].strip() if len(fields) > 5 and fields[5].startswith("/") else None
    return None


def saved_dataset(where: Path, out: Path, splits: tuple[str, ...] = ("train", "test")) -> Path:
    """The stripe images as a Hugging Face DatasetDict (an Image column and a ClassLabel), saved to disk."""
    from datasets import ClassLabel, Dataset, DatasetDict, Features
    from datasets import Image as ImageFeature

    names = ["diagonal", "horizontal", "vertical"]
    features = Features({"picture": ImageFeature(), "kind": ClassLabel(names=names)})
    parts = {}
    for part, folder in zip(splits, ("train", "test"), strict=False):
        files = sorted((where / folder).rglob("*.png"))
        parts[part] = Dataset.from_dict({"picture": [str(f) for f in files],
                                         "kind": [names.index(f.parent.name) for f in files]}, features=features)
    DatasetDict(parts).save_to_disk(str(out))
    return out


def test_a_saved_hugging_face_image_dataset_is_the_data_with_its_test_split(tmp_path: Path, capsys) -> None:
    config = experiment(tmp_path)
    saved_dataset(tmp_path, tmp_path / "saved")
    config.update(data={"path": "saved", "image_column": "picture", "label_column": "kind", "val_fraction": 0.2},
                  student={"family": "cnn", "channels": 4, "hidden": 8},
                  pipeline=[{"distill": {"epochs": 1}}, {"quantize": {"bits": 8}}])
    (tmp_path / "experiment.yaml").write_text(yaml.safe_dump(config))
    capsys.readouterr()
    assert main(["search", str(tmp_path / "experiment.yaml"), "--trials", "1"]) == 0
    assert "class indices {0: 'diagonal', 1: 'horizontal', 2: 'vertical'}" in capsys.readouterr().err
    splits = load_data({"path": str(tmp_path / "saved"), "image_column": "picture", "label_column": "kind"}, seed=0)
    assert len(splits.test_y) == 60 and splits.input_shape == (1, 16, 16)  # the dataset's own test split
    assert mapped_file(splits.train_x) is not None  # decoded once, memory-mapped like an image folder


@pytest.mark.parametrize("settings, key", [
    ({"image_column": "photo"}, "data.image_column"),
    ({"label_column": "class"}, "data.label_column"),
    ({"image_column": "kind"}, "data.image_column"),
    ({"text_column": "picture"}, "data.text_column"),
])
def test_a_saved_dataset_named_wrongly_is_one_line(settings: dict, key: str, tmp_path: Path, capsys) -> None:
    config = experiment(tmp_path)
    saved_dataset(tmp_path, tmp_path / "saved")
    config["data"] = {"path": "saved", "image_column": "picture", "label_column": "kind", **settings}
    (tmp_path / "experiment.yaml").write_text(yaml.safe_dump(config))
    capsys.readouterr()
    before = sorted(p.name for p in tmp_path.rglob("*"))
    assert main(["search", str(tmp_path / "experiment.yaml"), "--trials", "1"]) == 2
    one_line(capsys.readouterr().err, key)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_a_users_hugging_face_image_classifier_is_the_teacher_as_it_is(tmp_path: Path, capsys) -> None:
    """A ViT fine-tuned elsewhere on the stripes (with its own image processor, its labels in another order) is used
    as is: it takes the raw grayscale pixels and prepares them as its processor does; a teacher student of it is
    quantized and deployed."""
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessorPil

    config = experiment(tmp_path)  # writes the stripe images
    labels = ["vertical", "diagonal", "horizontal"]  # its own order
    processor = ViTImageProcessorPil(size={"height": 16, "width": 16}, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    files = sorted((tmp_path / "train").rglob("*.png"))
    pixels = processor(images=[Image.open(f).convert("RGB") for f in files], return_tensors="pt")["pixel_values"]
    targets = torch.tensor([labels.index(f.parent.name) for f in files])
    torch.manual_seed(0)
    model = ViTForImageClassification(ViTConfig(image_size=16, patch_size=4, hidden_size=32, num_hidden_layers=1,
                                                num_attention_heads=2, intermediate_size=64,
                                                id2label=dict(enumerate(labels))))
    optimizer = torch.optim.Adam(model.parameters(), 3e-3)
    for _ in range(60):  # the user's fine-tuning, elsewhere
        optimizer.zero_grad()
        model(pixel_values=pixels, labels=targets).loss.backward()
        optimizer.step()
    model.save_pretrained(tmp_path / "vit")
    processor.save_pretrained(tmp_path / "vit")

    config.update(data={"path": "train", "test_path": "test", "val_fraction": 0.2}, teacher={"hf": "vit"},
                  student={"family": "teacher"}, pipeline=[{"quantize": {"bits": {"choice": [16, 8]}}}])
    (tmp_path / "experiment.yaml").write_text(yaml.safe_dump(config))
    capsys.readouterr()
    assert main(["search", str(tmp_path / "experiment.yaml"), "--trials", "2"]) == 0
    out, err = capsys.readouterr()
    assert "fine-tuned for the data's 3 classes; its outputs matched to the data's classes by name" in err
    assert not (tmp_path / "cache" / "teachers").exists()
    teacher = next(line for line in out.splitlines() if line.startswith("teacher:"))
    assert float(teacher.split("accuracy=")[1].split()[0]) > 0.9, teacher  # its preprocessing and classes, matched
    assert "[trial 1 · 2/2] accuracy=" in out  # the int8 baseline of the user's ViT
