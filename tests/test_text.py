"""Text: the packaged MiniLM teacher loads offline, text data is read and tokenized, text students build (BERT from
a BertConfig, initialised from the teacher or not; embedding bag; 1-D CNN), and a tiny study runs end to end."""

from __future__ import annotations

import json
import re
import math
import socket
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
import yaml

from squeezer.compressors import Distill, InvalidConfig, TeacherOutputs, TrialContext
from squeezer.compressors.distill.transformer import attention_loss, hidden_loss, layer_map
from squeezer.compressors.quantize import Precision, dynamic_int8, float_model
from squeezer.compressors.prune import Prune
from squeezer.compressors.quantize import Quantize
from squeezer.search.runtime import deploy, export
from squeezer.compressors.transformer_prune import prune_heads_and_ffn
from squeezer.search import data, models
from squeezer.search.cli import main
from squeezer.search.errors import ConfigError
from squeezer.search.data.text import full_length
from squeezer.search.trial.metrics import saved_size
from squeezer.search.models import text

from conftest import load_data, one_line

POSITIVE = ["a great and moving film", "wonderful acting, fine story", "good fun", "a delight from start to end",
            "brilliant, warm and funny"]
NEGATIVE = ["a dull and tedious mess", "awful script, poor acting", "bad", "a boring waste of two hours",
            "clumsy, flat and lifeless"]


@pytest.fixture(scope="module")
def minilm_tokenizer():
    return text.tokenizer("all-MiniLM-L6-v2")


@pytest.fixture(scope="module")
def tiny_teacher(tmp_path_factory: pytest.TempPathFactory, minilm_tokenizer) -> Path:
    """A tiny random BERT saved like a user's local model: config, weights and the MiniLM tokenizer."""
    from transformers import BertConfig, BertModel

    where = tmp_path_factory.mktemp("tiny-bert")
    torch.manual_seed(0)
    config = BertConfig(vocab_size=minilm_tokenizer.vocab_size, hidden_size=32, num_hidden_layers=4,
                        num_attention_heads=4, intermediate_size=64, max_position_embeddings=64)
    BertModel(config).save_pretrained(where)
    minilm_tokenizer.save_pretrained(where)
    return where


def reviews(path: Path, rows: int = 120, label_column: str = "label") -> Path:
    lines = ["text," + label_column] + [f'"{(POSITIVE if i % 2 else NEGATIVE)[i % 5]}",'
                                         f'{"fresh" if i % 2 else "rotten"}' for i in range(rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


def tokens(vocab: int = 30522) -> data.Tokens:
    return data.Tokens(vocab_size=vocab, pad_id=0)


def test_the_packaged_minilm_teacher_loads_with_the_network_off(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError(f"a network connection was attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    tok = text.tokenizer("all-MiniLM-L6-v2")
    teacher = models.build({"family": "hf", "model": "all-MiniLM-L6-v2"}, (16,), 2, key="teacher", tokens=tokens())
    assert 22_000_000 < sum(p.numel() for p in teacher.parameters()) < 23_500_000
    ids = torch.tensor([tok("a fine film", padding="max_length", max_length=16)["input_ids"]])
    assert teacher.eval()(ids).shape == (1, 2)


def test_rotten_tomatoes_reads_the_packaged_sentences_without_plot_rows(minilm_tokenizer) -> None:
    splits = load_data({"name": "rotten_tomatoes", "max_length": 32}, seed=0, tokenizer=minilm_tokenizer)
    total = len(splits.train_x) + len(splits.val_x) + len(splits.test_x)
    assert total == 12808 and splits.num_classes == 2  # 7403 fresh + 5405 rotten review sentences
    assert splits.train_x.dtype == torch.int64 and splits.input_shape == (32,) and splits.tokens.pad_id == 0


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_a_text_file_larger_than_memory_is_tokenized_in_chunks_into_mapped_token_ids(
        suffix: str, tmp_path: Path, minilm_tokenizer, monkeypatch) -> None:
    import pandas as pd
    from squeezer.search.data import text as texts

    rows = pd.DataFrame([{"review": f"{word} film number {i}", "stars": ["one", "two", "three"][i % 3]}
                         for i, word in enumerate(["fine", "poor", "odd"] * 20)])
    path = tmp_path / f"r{suffix}"
    rows.to_json(path, orient="records", lines=True) if suffix == ".jsonl" else rows.to_parquet(path)
    spec = {"path": str(path), "text_column": "review", "label_column": "stars", "max_length": 12}
    whole = load_data(spec, seed=0, tokenizer=minilm_tokenizer)
    monkeypatch.setattr(texts, "STREAM_BYTES", 0)  # "larger than memory": any size
    monkeypatch.setattr(texts, "STREAM_ROWS", 7)
    streamed = load_data(spec, seed=0, tokenizer=minilm_tokenizer)
    assert streamed.classes == whole.classes and streamed.train_x.dtype == torch.int64
    for name in ("train_x", "train_y", "val_x", "test_x", "test_y"):
        assert torch.equal(getattr(streamed, name), getattr(whole, name)), name
    [ids] = (tmp_path / "cache" / "texts").glob("*[0-9a-f].npy")
    assert np.load(ids, mmap_mode="r").shape == (60, 12)

    rows.loc[40, "review"] = ""  # an empty text deep in the file: named, and nothing is left in the cache
    rows.to_json(path, orient="records", lines=True) if suffix == ".jsonl" else rows.to_parquet(path)
    with pytest.raises(ConfigError, match="empty"):
        load_data(spec, seed=1, tokenizer=minilm_tokenizer)
    assert sorted(p.name for p in ids.parent.iterdir()) == [ids.name[:-4] + ".labels.npy", ids.name]


def test_a_users_csv_and_jsonl_with_named_columns_and_string_labels(tmp_path: Path, minilm_tokenizer) -> None:
    rows = [{"review": f"{word} film number {i}", "stars": ["one", "two", "three"][i % 3]}
            for i, word in enumerate(["fine", "poor", "odd"] * 20)]
    (tmp_path / "r.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    splits = load_data({"path": str(tmp_path / "r.jsonl"), "text_column": "review", "label_column": "stars",
                        "max_length": 12}, seed=0, tokenizer=minilm_tokenizer)
    assert splits.num_classes == 3 and splits.input_shape == (12,)
    csv = load_data({"path": str(reviews(tmp_path / "r.csv", label_column="y")), "label_column": "y"}, seed=0,
                    tokenizer=minilm_tokenizer)
    assert csv.num_classes == 2 and csv.input_shape == (64,)
    import pandas as pd

    pd.DataFrame(rows).to_parquet(tmp_path / "r.parquet")  # Parquet: texts when the text column is named
    parquet = load_data({"path": str(tmp_path / "r.parquet"), "text_column": "review", "label_column": "stars",
                         "max_length": 12}, seed=0, tokenizer=minilm_tokenizer)
    assert parquet.num_classes == 3 and parquet.tokens is not None
    assert torch.equal(parquet.train_x, load_data({"path": str(tmp_path / "r.jsonl"), "text_column": "review",
                                                   "label_column": "stars", "max_length": 12}, seed=0,
                                                  tokenizer=minilm_tokenizer).train_x)


def test_cutting_padding_columns_does_not_change_the_logits() -> None:
    torch.manual_seed(0)
    student = models.build({"family": "bert", "layers": 1, "hidden": 16, "heads": 2, "intermediate": 32}, (24,), 2,
                           tokens=tokens(100)).eval()
    ids = torch.randint(1, 100, (3, 24))
    ids[:, 10:] = 0  # padding after 10 tokens in every row
    with torch.no_grad():
        trimmed = student(ids)
        full = student.model(input_ids=ids, attention_mask=(ids != 0).long()).logits
    assert text.trim(ids, 0).shape == (3, 10)
    assert torch.allclose(trimmed, full, atol=1e-5)


def test_a_bert_student_may_read_fewer_tokens_than_the_data_holds() -> None:
    torch.manual_seed(0)
    student = models.build({"family": "bert", "layers": 1, "hidden": 16, "heads": 2, "intermediate": 32,
                            "max_length": 8}, (24,), 2, tokens=tokens(100)).eval()
    ids = torch.randint(1, 100, (3, 24))
    with torch.no_grad():
        assert torch.equal(student(ids), student(ids[:, :8]))
    assert student.model.config.max_position_embeddings == 8
    with pytest.raises(Exception, match="max_length"):
        models.build({"family": "bert", "max_length": 32}, (24,), 2, tokens=tokens(100))


def test_latency_rows_carry_no_padding() -> None:
    ids = torch.tensor([[5, 6, 7, 0, 0, 0, 0], [9, 0, 0, 0, 0, 0, 0]])
    assert full_length(ids, 0).tolist() == [[5, 6, 7, 5, 6, 7, 5], [9] * 7]


def test_teacher_initialised_layers_are_exact_copies_of_every_kth_teacher_layer(tiny_teacher: Path) -> None:
    teacher = models.build({"family": "hf", "model": str(tiny_teacher)}, (32,), 2, tokens=tokens())
    student = models.build({"family": "bert", "layers": 2, "hidden": 32, "heads": 4, "intermediate": 64,
                            "init": "teacher"}, (32,), 2, tokens=tokens(), teacher=teacher)
    s, t = student.state_dict(), teacher.state_dict()
    for i, j in ((0, 1), (1, 3)):  # 2 of 4 layers: teacher layers 2 and 4 (the last aligned)
        for name in [k for k in s if f".layer.{i}." in k]:
            assert torch.equal(s[name], t[name.replace(f".layer.{i}.", f".layer.{j}.")]), name
    embeddings = "model.bert.embeddings.word_embeddings.weight"
    assert torch.equal(s[embeddings], t[embeddings])
    narrow = models.build({"family": "bert", "layers": 1, "hidden": 16, "heads": 2, "intermediate": 32,
                           "init": "teacher"}, (32,), 2, tokens=tokens(), teacher=teacher).state_dict()
    assert torch.equal(narrow[embeddings], t[embeddings][:, :16])  # narrower: the leading slice


@pytest.mark.parametrize("arch", [{"family": "bag", "dim": 8, "hidden": 8},
                                  {"family": "textcnn", "dim": 8, "channels": 8, "kernel": 3},
                                  {"family": "bert", "layers": 1, "hidden": 8, "heads": 2, "intermediate": 16}])
def test_cheap_and_transformer_text_students_ignore_padding(arch: dict) -> None:
    torch.manual_seed(0)
    model = models.build(arch, (12,), 3, tokens=tokens(50)).eval()
    ids = torch.tensor([[4, 8, 15, 16, 0, 0, 0, 0, 0, 0, 0, 0]])
    with torch.no_grad():
        assert torch.allclose(model(ids), model(ids[:, :4]), atol=1e-5)


def test_text_and_image_families_do_not_mix() -> None:
    with pytest.raises(Exception, match="student.family"):
        models.build({"family": "mlp"}, (12,), 2, tokens=tokens(50))
    with pytest.raises(Exception, match="student.family"):
        models.build({"family": "bag"}, (1, 8, 8), 2)


def text_study(where: Path, teacher: Path, trials: int = 2) -> dict:
    return {
        "name": "tiny_text", "seed": 0,
        "data": {"path": str(reviews(where / "reviews.csv")), "max_length": 16},
        "teacher": {"family": "hf", "arch": {"model": str(teacher)}, "epochs": 2, "lr": 0.001},
        "student": {"family": {"choice": {
            "bert": {"layers": 2, "hidden": 16, "heads": 2, "intermediate": 32, "max_length": {"int": [8, 16]},
                     "init": {"choice": ["teacher", "random"]}},
            "bag": {"dim": {"int": [4, 16]}, "hidden": 8}}}},
        "pipeline": [{"distill": {"epochs": 2, "temperature": {"float": [1.0, 4.0]}}}, {"quantize": {"bits": 8}}],
        "search": {"sampler": "random", "trials": trials},
        "measure": {"repeats": 5, "warmup": 1, "batch": 8},
        "training": {"batch_size": 32},
    }


STUDENTS = {"bert": {"layers": 2, "hidden": 16, "heads": 2, "intermediate": 32, "max_length": 16, "init": "teacher"},
            "textcnn": {"dim": 8, "channels": 8, "kernel": 3},
            "bag": {"dim": 8, "hidden": 8},
            "ngram": {"dim": 8, "buckets": 512, "trigrams": True, "init": "teacher", "vocab": "seen"}}


@pytest.mark.parametrize("runtime", ["onnxruntime", "torch"])
@pytest.mark.parametrize("family", sorted(STUDENTS))
def test_a_text_study_runs_to_its_end_and_its_front_is_tested_and_exported(
        family: str, runtime: str, tmp_path: Path, tiny_teacher: Path, capsys) -> None:
    """Every text family in every runtime: trials, the front's test re-evaluation, the export reloaded (and the
    exported ONNX file, fed the validation texts' token ids, scores the accuracy the trial logged)."""
    import onnxruntime as ort
    from mlflow.tracking import MlflowClient

    from squeezer.search.config.experiment import load_config
    from squeezer.search.trial.teacher import teacher_tokenizer

    study = text_study(tmp_path, tiny_teacher, trials=1)
    study["student"] = {"family": family, **STUDENTS[family]}
    study["measure"]["runtime"] = runtime
    config = tmp_path / "text.yaml"
    config.write_text(yaml.safe_dump(study))
    assert main(["search", str(config)]) == 0
    assert "1 completed" in capsys.readouterr().out
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")  # absolute: MLflow caches stores by URI
    [run] = client.search_runs([client.get_experiment_by_name("squeezer-tiny_text").experiment_id],
                               filter_string="tags.pareto = 'true'")
    assert 0.0 <= run.data.metrics["test_accuracy"] <= 1.0
    assert main(["export", "--study-name", "tiny_text", "--trial", "0", "--out", str(tmp_path / "out"),
                 "--format", "onnx" if runtime == "onnxruntime" else "torch"]) == 0
    if runtime == "torch":  # rebuilt whole: buffers outside the state dict (position ids) are real, not meta
        rebuilt = export.load(tmp_path / "out")
        assert not any(t.is_meta for t in [*rebuilt.buffers(), *rebuilt.parameters()])
        return
    settings = load_config(config)
    splits = data.load(settings.data, settings.seed, tokenizer=teacher_tokenizer(settings.teacher))
    session = ort.InferenceSession(str(next((tmp_path / "out").rglob("*.onnx"))), providers=["CPUExecutionProvider"])
    predicted = session.run(None, {session.get_inputs()[0].name: splits.val_x.numpy()})[0].argmax(1)
    assert float((predicted == splits.val_y.numpy()).mean()) == pytest.approx(run.data.metrics["accuracy"])


def broken_model(config: dict, where: Path, tokenizer: bool) -> None:
    """A model directory whose weights are garbage (with a tokenizer), or that has no tokenizer."""
    source = Path(config["teacher"]["arch"]["model"])
    broken = where / "broken"
    broken.mkdir()
    for item in source.iterdir():
        if tokenizer or "token" not in item.name and item.name != "vocab.txt":
            (broken / item.name).write_bytes(item.read_bytes())
    if tokenizer:
        (broken / "model.safetensors").write_bytes(b"not weights")
    config["teacher"]["arch"]["model"] = str(broken)


def data_file(content: str, suffix: str = "csv"):
    def change(config: dict, where: Path) -> None:
        (where / f"given.{suffix}").write_text(content)
        config["data"]["path"] = str(where / f"given.{suffix}")
    return change


@pytest.mark.parametrize("change, key", [
    (lambda c, w: c["teacher"]["arch"].update(model=str(w / "nowhere")), "teacher.arch.model"),
    (lambda c, w: broken_model(c, w, tokenizer=False), "teacher.arch.model"),
    (lambda c, w: broken_model(c, w, tokenizer=True), "teacher.arch.model"),
    (data_file("text,label\n"), "data.text_column"),
    (data_file("text,label\n" + "fine film,fresh\n,rotten\n" * 30), "data.text_column"),
    (data_file("text,label\n" + "fine film,fresh\n" * 30), "data.label_column"),
    (data_file("\x00\x01 not,a\ncsv"), "data.path"),
    (lambda c, w: c["data"].update(text_column="body"), "data.text_column"),
    (lambda c, w: c["data"].update(max_length=1), "data.max_length"),
    (data_file('text,label\n"a fine film,fresh\n"bad",rotten\n' + "good,fresh\nbad,rotten\n" * 20), "data.path"),
    (data_file('text,label\ngood,fresh\n"bad,rotten\n' + "good,fresh\nbad,rotten\n" * 20), "data.path"),
    (data_file("text,label\n" + "good,fresh,extra\nbad,rotten\n" * 20), "data.path"),
    (data_file('{"text": "good", "label": 1}\n["bad", 0]\n' * 20, "jsonl"), "data.path"),
    (data_file('{"text": "good", "label": 1}\n{"text": bad}\n' * 20, "jsonl"), "data.path"),
    (lambda c, w: (data_file("text,label\n" + "good,1\nbad,0\n" * 30)(c, w),
                   (w / "test.csv").write_text("text,label\n" + "good,fresh\nbad,rotten\n" * 5),
                   c["data"].update(test_path=str(w / "test.csv"))), "data.test_path"),
    (lambda c, w: c["teacher"]["arch"].update(model=str(w)), "teacher.arch.model"),
    (lambda c, w: c.update(student={"family": "mlp"}), "student.family"),
])
def test_bad_text_input_exits_2_with_one_line_and_writes_nothing(change, key: str, tmp_path: Path,
                                                                 tiny_teacher: Path, capsys) -> None:
    config = text_study(tmp_path, tiny_teacher)
    change(config, tmp_path)
    refused(config, tmp_path, key, capsys)


def refused(config: dict, where: Path, key: str, capsys) -> None:
    """``squeezer search`` on ``config`` exits 2 with one line naming ``key`` and writes nothing in ``where``."""
    path = where / "text.yaml"
    path.write_text(yaml.safe_dump(config))
    before = sorted(p.name for p in where.rglob("*"))
    assert main(["search", str(path)]) == 2
    one_line(capsys.readouterr().err, key)
    assert sorted(p.name for p in where.rglob("*")) == before


def test_hidden_state_loss_is_the_mse_over_real_tokens() -> None:
    s = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [9.0, 9.0]]])
    t = torch.tensor([[[0.0, 2.0], [3.0, 6.0], [0.0, 0.0]]])
    mask = torch.tensor([[True, True, False]])  # the third token is padding
    assert hidden_loss(s, t, mask).item() == pytest.approx((1 + 0 + 0 + 4) / (2 * 2))


def test_attention_loss_is_the_kl_between_head_averaged_distributions() -> None:
    teacher = torch.tensor([[[[0.5, 0.5], [1.0, 0.0]], [[0.5, 0.5], [0.0, 1.0]]]]).mean(1)  # 2 heads, averaged
    student = torch.tensor([[[[0.75, 0.25], [0.5, 0.5]]]]).mean(1)                            # 1 head
    mask = torch.tensor([[True, True]])
    p, q = torch.tensor([0.5, 0.5]), torch.tensor([0.75, 0.25])
    first = (p * (p / q).log()).sum()  # query 1; query 2: the teacher's mean is (0.5, 0.5) = the student's
    assert attention_loss(student, teacher, mask).item() == pytest.approx(first.item() / 2, rel=1e-5)


def test_layers_map_uniformly_so_the_last_layers_meet() -> None:
    assert layer_map(2, 6) == [(1, 3), (2, 6)]
    assert layer_map(3, 6) == [(1, 2), (2, 4), (3, 6)]
    assert layer_map(2, 6, ["0:0", "2:5"]) == [(0, 0), (2, 5)]
    with pytest.raises(InvalidConfig, match="feature_layers"):
        layer_map(2, 6, ["3:1"])


def test_head_and_ffn_pruning_keeps_outputs_finite_and_shrinks_the_saved_file(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = models.build({"family": "bert", "layers": 2, "hidden": 32, "heads": 4, "intermediate": 64}, (16,), 2,
                         tokens=tokens(500)).eval()
    ids = torch.randint(1, 500, (4, 16))
    before = saved_size(model, tmp_path / "a.pt")
    prune_heads_and_ffn(model, 0.5)
    layer = model.model.bert.encoder.layer[0]
    assert layer.attention.self.query.out_features == 16 and layer.intermediate.dense.out_features == 32
    with torch.no_grad():
        assert torch.isfinite(model(ids)).all() and model(ids).shape == (4, 2)
    assert saved_size(model, tmp_path / "b.pt") < before


def test_taylor_and_global_head_pruning_keep_at_least_one_head_and_unit_per_layer() -> None:
    torch.manual_seed(0)
    model = models.build({"family": "bert", "layers": 2, "hidden": 32, "heads": 4, "intermediate": 64}, (16,), 2,
                         tokens=tokens(500))
    ids, labels = torch.randint(1, 500, (32, 16)), torch.randint(0, 2, (32,))
    ctx = TrialContext(ids, labels, ids, labels, seed=0, batch_size=16)
    pruned = Prune({"ratio": 0.7, "importance": "taylor", "scope": "global", "steps": 2}).apply(model, ctx)
    layers = pruned.model.bert.encoder.layer
    heads = [layer.attention.self.num_attention_heads for layer in layers]
    units = [layer.intermediate.dense.out_features for layer in layers]
    assert all(h >= 1 for h in heads) and all(u >= 1 for u in units)
    assert sum(heads) <= 0.5 * 8 and sum(units) <= 0.5 * 128  # compounding steps of a global ranking
    with torch.no_grad():
        assert pruned(ids).shape == (32, 2)


def test_text_students_run_in_onnx_runtime_as_in_torch_and_int8_shrinks_their_token_tables(tmp_path: Path) -> None:
    torch.manual_seed(0)
    ids = torch.randint(1, 5000, (32, 16))
    ids[:10, 9:] = 0  # padding: masked in both runtimes
    ctx = TrialContext(ids, torch.zeros(32, dtype=torch.long), ids, ids)
    for arch in ({"family": "bert", "layers": 1, "hidden": 32, "heads": 2, "intermediate": 64},
                 {"family": "bag", "dim": 32}, {"family": "textcnn", "dim": 32, "channels": 16}):
        model = models.build(arch, (16,), 2, tokens=tokens(5000)).eval()
        fp32 = deploy(model, "onnxruntime", tmp_path / "fp32", ids[:1])  # a padded example: traced at full length
        int8 = deploy(Quantize({"bits": 8}).apply(model, ctx), "onnxruntime", tmp_path / "int8", ids[:1])
        with torch.no_grad():
            assert torch.allclose(fp32.predict(ids), model(ids), atol=1e-5), arch
            assert (int8.predict(ids) - model(ids)).abs().max() < 0.05, arch
            assert torch.allclose(fp32.predict(ids[10:]), model(ids[10:]), atol=1e-5), arch  # all 16 tokens read
        assert int8.path.stat().st_size < 0.35 * fp32.path.stat().st_size, arch


def test_int8_text_students_store_int8_token_tables_and_16_bit_ones_run(tmp_path: Path) -> None:
    torch.manual_seed(0)
    ids = torch.randint(1, 5000, (4, 16))
    for arch in ({"family": "bert", "layers": 1, "hidden": 32, "heads": 2, "intermediate": 64},
                 {"family": "bag", "dim": 32}, {"family": "textcnn", "dim": 32, "channels": 16}):
        model = models.build(arch, (16,), 2, tokens=tokens(5000)).eval()
        quantized = dynamic_int8(model)
        assert saved_size(quantized, tmp_path / "q.pt") < 0.35 * saved_size(model, tmp_path / "f.pt"), arch
        with torch.no_grad():
            assert (quantized(ids) - model(ids)).abs().max() < 0.05, arch
            assert Precision(model, torch.bfloat16)(ids).dtype == torch.float32  # ids stay integers inside


def test_transformer_distillation_trains_every_loss_and_reports_it(tiny_teacher: Path) -> None:
    torch.manual_seed(0)
    teacher = models.build({"family": "hf", "model": str(tiny_teacher)}, (16,), 2, tokens=tokens()).eval()
    student = models.build({"family": "bert", "layers": 2, "hidden": 16, "heads": 2, "intermediate": 32}, (16,), 2,
                           tokens=tokens())
    x = torch.randint(1, 3000, (64, 16))
    x[:, 10:] = 0
    y = torch.randint(0, 2, (64,))
    reports: list[dict] = []
    ctx = TrialContext(x, y, x[:16], y[:16], teacher=teacher, batch_size=32,
                       teachers=TeacherOutputs([teacher], x), report=lambda step, m: reports.append(dict(m)))
    Distill({"epochs": 2, "feature_weight": 1.0, "attention_weight": 1.0, "embedding_weight": 1.0}).apply(student,
                                                                                                           ctx)
    for loss in ("soft", "hard", "feature", "attention", "embedding"):
        assert math.isfinite(reports[-1][f"distill.loss.{loss}"]), loss
    assert reports[-1]["distill.loss.feature"] < reports[0]["distill.loss.feature"]


def test_the_teachers_hidden_states_and_attentions_are_computed_once_then_cached(tiny_teacher: Path) -> None:
    class Memory:
        def __init__(self) -> None:
            self.kept: dict = {}

        def get(self, teacher: int, name: str):
            return self.kept.get((teacher, name))

        def put(self, teacher: int, name: str, value) -> None:
            self.kept[(teacher, name)] = value

    teacher = models.build({"family": "hf", "model": str(tiny_teacher)}, (16,), 2, tokens=tokens()).eval()
    x = torch.randint(1, 3000, (40, 16))
    x[:20, 6:] = 0  # half the texts are short
    cache = Memory()
    hidden, probs = TeacherOutputs([teacher], x, cache).encoded([0, 4], [2])
    assert {n for _, n in cache.kept} >= {f"hidden.{i}" for i in range(5)} | {f"attention_probs.{i}"
                                                                               for i in range(1, 5)}
    with torch.no_grad():
        direct = teacher.encode(x[:20], attentions=True)  # the short texts alone: cut to 6 tokens
    assert torch.allclose(hidden[4][:20, :6].float(), direct.hidden[4], atol=1e-2)
    assert torch.allclose(probs[2][:20, :6, :6].float(), direct.attentions[2], atol=1e-3)
    with torch.no_grad():
        assert torch.allclose(hidden[0][20:].float(), teacher.encode(x[20:]).hidden[0], atol=1e-2)
    again = TeacherOutputs([teacher], x, cache)
    again.encoded([2], [1, 3])
    assert again.forward_passes == 0


def test_a_users_fine_tuned_classifier_directory_is_the_teacher_as_it_is(tmp_path: Path, minilm_tokenizer,
                                                                         capsys) -> None:
    """A sequence classifier already trained for the data's classes (its labels in another order than the data's)
    is used as is: not trained again, nothing cached, its outputs matched to the data's classes by name."""
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(vocab_size=minilm_tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=4, intermediate_size=64, max_position_embeddings=64,
                        id2label={0: "rotten", 1: "fresh"}, label2id={"rotten": 0, "fresh": 1})
    model = BertForSequenceClassification(config)
    batch = minilm_tokenizer(POSITIVE + NEGATIVE, padding=True, return_tensors="pt")
    labels = torch.tensor([1] * 5 + [0] * 5)  # its own order: fresh is 1
    optimizer = torch.optim.Adam(model.parameters(), 3e-3)
    for _ in range(40):  # the user's fine-tuning, elsewhere
        optimizer.zero_grad()
        model(**batch, labels=labels).loss.backward()
        optimizer.step()
    model.save_pretrained(tmp_path / "mine")
    minilm_tokenizer.save_pretrained(tmp_path / "mine")

    study = text_study(tmp_path, tmp_path / "mine", trials=1)
    study["teacher"] = {"hf": "mine"}  # relative to the experiment file
    (tmp_path / "text.yaml").write_text(yaml.safe_dump(study))
    assert main(["search", str(tmp_path / "text.yaml")]) == 0
    out, err = capsys.readouterr()
    assert "is fine-tuned for the data's 2 classes; its outputs matched to the data's classes by name" in err
    assert "teacher: epoch" not in err and not (tmp_path / "cache" / "teachers").exists()
    teacher_line = next(line for line in out.splitlines() if line.startswith("teacher:"))
    assert "accuracy=1.0000" in teacher_line  # matched in the wrong order, it would be wrong on every review


def test_a_classifier_fine_tuned_for_other_classes_than_the_datas_is_one_line(tmp_path: Path, minilm_tokenizer,
                                                                            capsys) -> None:
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(vocab_size=minilm_tokenizer.vocab_size, hidden_size=16, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=32, max_position_embeddings=64,
                        id2label={0: "positive", 1: "negative"})
    BertForSequenceClassification(config).save_pretrained(tmp_path / "other")
    minilm_tokenizer.save_pretrained(tmp_path / "other")
    study = text_study(tmp_path, tmp_path / "other", trials=1)
    study["teacher"] = {"hf": str(tmp_path / "other")}
    (tmp_path / "text.yaml").write_text(yaml.safe_dump(study))
    capsys.readouterr()  # saving the model printed its progress
    assert main(["search", str(tmp_path / "text.yaml")]) == 2
    assert "fine-tuned for the classes ['positive', 'negative'], but the data's are ['fresh', 'rotten']" in \
        one_line(capsys.readouterr().err, "teacher.arch.model")
    assert not (tmp_path / "mlflow.db").exists()


def test_a_saved_hugging_face_text_dataset_is_the_data(tmp_path: Path, tiny_teacher: Path, capsys) -> None:
    from datasets import Dataset

    rows = [(POSITIVE if i % 2 else NEGATIVE)[i % 5] for i in range(120)]
    Dataset.from_dict({"sentence": rows, "label": ["fresh" if i % 2 else "rotten" for i in range(120)]}) \
        .save_to_disk(str(tmp_path / "reviews"))
    study = text_study(tmp_path, tiny_teacher, trials=1)
    study["data"] = {"path": str(tmp_path / "reviews"), "text_column": "sentence", "max_length": 16}
    study["student"] = {"family": "bag", "dim": 8, "hidden": 8}
    (tmp_path / "text.yaml").write_text(yaml.safe_dump(study))
    capsys.readouterr()
    assert main(["search", str(tmp_path / "text.yaml")]) == 0
    assert "class indices {0: 'fresh', 1: 'rotten'}" in capsys.readouterr().err


def test_a_large_saved_text_dataset_is_tokenized_in_chunks_into_the_same_token_ids(
        tmp_path: Path, minilm_tokenizer, monkeypatch) -> None:
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value
    from squeezer.search.data import text as texts

    features = Features({"sentence": Value("string"), "label": ClassLabel(names=["fresh", "rotten"])})
    part = {"sentence": [(POSITIVE if i % 2 else NEGATIVE)[i % 5] for i in range(50)],
            "label": [i % 2 for i in range(50)]}
    DatasetDict({"train": Dataset.from_dict(part, features=features),
                 "test": Dataset.from_dict(part, features=features)}).save_to_disk(str(tmp_path / "reviews"))
    spec = {"path": str(tmp_path / "reviews"), "text_column": "sentence", "max_length": 16}
    whole = load_data(spec, seed=0, tokenizer=minilm_tokenizer)
    monkeypatch.setattr(texts, "STREAM_BYTES", 0)
    monkeypatch.setattr(texts, "STREAM_ROWS", 7)
    streamed = load_data(spec, seed=0, tokenizer=minilm_tokenizer)
    assert streamed.classes == whole.classes == ("fresh", "rotten")
    for name in ("train_x", "train_y", "val_x", "test_x", "test_y"):
        assert torch.equal(getattr(streamed, name), getattr(whole, name)), name
    assert len(list((tmp_path / "cache" / "texts").glob("*[0-9a-f].npy"))) == 2  # train and test


def test_the_teachers_own_encoder_with_layers_dropped_and_heads_pruned_exports_and_reloads(
        tmp_path: Path, tiny_teacher: Path) -> None:
    study = text_study(tmp_path, tiny_teacher, trials=3)  # two baselines, then the pruned teacher
    study["student"] = {"family": "teacher"}
    study["pipeline"] = [{"distill": {"epochs": 1}}, {"prune": {"keep_layers": 2, "ratio": 0.5}},
                         {"quantize": {"bits": 32}}]
    study["measure"]["runtime"] = "torch"
    (tmp_path / "text.yaml").write_text(yaml.safe_dump(study))
    assert main(["search", str(tmp_path / "text.yaml")]) == 0
    assert main(["export", "--study-name", "tiny_text", "--trial", "2", "--out", str(tmp_path / "out"),
                 "--format", "torch"]) == 0
    rebuilt = float_model(export.load(tmp_path / "out", realised=False))
    layers = [m for m in rebuilt.modules() if hasattr(m, "attention") and hasattr(m, "intermediate")]
    assert rebuilt.layers == len(layers) == 2  # of the teacher's 4: its 2nd and 4th
    assert all(layer.attention.self.num_attention_heads == 2 for layer in layers)  # of 4
    ids = torch.randint(1, 1000, (3, 16))
    assert rebuilt.eval()(ids).shape == (3, 2)


def test_dropping_layers_of_a_student_without_any_is_one_line(tmp_path: Path, tiny_teacher: Path, capsys) -> None:
    study = text_study(tmp_path, tiny_teacher, trials=1)
    study["student"] = {"family": "bag", "dim": 8, "hidden": 8}
    study["pipeline"] = [{"prune": {"keep_layers": 2}}]
    (tmp_path / "text.yaml").write_text(yaml.safe_dump(study))
    assert main(["search", str(tmp_path / "text.yaml")]) == 2
    assert "this student has none" in one_line(capsys.readouterr().err, "prune.keep_layers")


def test_every_text_study_measures_the_tfidf_baseline_and_shows_it_beside_the_teacher(
        tmp_path: Path, tiny_teacher: Path, capsys) -> None:
    """The simple model a user compares with: on the parent run, in the study's summary and in `squeezer pareto`."""
    from mlflow.tracking import MlflowClient

    study = text_study(tmp_path, tiny_teacher, trials=1)
    study["student"] = {"family": "ngram", "dim": 8, "buckets": 256}
    study["pipeline"][0]["distill"].update(augment=True, augment_copies=2)
    (tmp_path / "text.yaml").write_text(yaml.safe_dump(study))
    assert main(["search", str(tmp_path / "text.yaml")]) == 0
    out, err = capsys.readouterr()
    assert "TF-IDF baseline: accuracy=" in out and "2 augmented copies of each of" in err
    assert re.search(r"tf-idf +[01]\.\d{4}", out)
    assert "no member is at least as accurate as the TF-IDF baseline" in out or "TF-IDF baseline matched" in out
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    [parent] = client.search_runs([client.get_experiment_by_name("squeezer-tiny_text").experiment_id],
                                  filter_string="tags.`squeezer.role` = 'study'")
    assert {"tfidf.accuracy", "tfidf.test_accuracy", "tfidf.size_bytes", "tfidf.latency_ms"} <= set(parent.data.metrics)
    assert parent.data.metrics["tfidf.accuracy"] == 1.0  # the reviews repeat: the simple model reads them exactly
    assert main(["pareto", "--study-name", "tiny_text"]) == 0
    assert re.search(r"tf-idf +1\.0000", capsys.readouterr().out)


def test_where_tfidf_knows_more_than_the_teacher_it_teaches_too_and_the_search_chooses(
        tmp_path: Path, tiny_teacher: Path, capsys) -> None:
    """The reviews repeat, so TF-IDF reads them exactly while a tiny teacher trained 2 epochs does not: the baseline
    joins the teachers (said at the start), and the search draws distill.ensemble over none | mean | confidence."""
    study = text_study(tmp_path, tiny_teacher, trials=4)
    study["student"] = {"family": "bag", "dim": 8, "hidden": 8}
    (tmp_path / "text.yaml").write_text(yaml.safe_dump(study))
    assert main(["search", str(tmp_path / "text.yaml")]) == 0
    out, err = capsys.readouterr()
    said = re.search(r"TF-IDF baseline: validation accuracy 1\.0000 beats the teacher's (0\.\d{4}): it teaches too, "
                     r"its cross-fitted class probabilities beside the teacher's soft labels \(distill\.ensemble none "
                     r"\| mean \| confidence\)", err)
    assert said, err
    study = optuna.load_study(study_name="tiny_text", storage=f"sqlite:///{tmp_path}/squeezer.db")
    assert {t.params["distill.ensemble"] for t in study.trials} <= {"none", "mean", "confidence"}
    assert all(t.state.name == "COMPLETE" for t in study.trials)


def test_a_teacher_at_least_as_accurate_as_tfidf_teaches_alone(tmp_path: Path, tiny_teacher: Path) -> None:
    from types import SimpleNamespace

    from squeezer.search.config.experiment import parse_config
    from squeezer.search.trial import tfidf

    config = parse_config(text_study(tmp_path, tiny_teacher))
    texts = SimpleNamespace(texts=["a text"])  # the decision reads no more of the data when the teacher ties
    assert tfidf.as_teacher(config, texts, {"accuracy": 0.8, "C": 1.0}, teacher_accuracy=0.8) == (config, None, "")


def test_the_baseline_s_soft_labels_are_cross_fitted_on_texts_it_never_saw() -> None:
    from squeezer.search.trial import tfidf

    texts = [f"{word} film {i}" for i, word in enumerate(["great", "awful"] * 40)]
    labels = np.array([0, 1] * 40)
    logits = tfidf.cross_fitted(texts, labels, classes=3, strength=10.0)
    assert logits.shape == (80, 3) and np.allclose(np.exp(logits).sum(1), 1.0, atol=1e-4)
    assert (logits.argmax(1) == labels).mean() == 1.0  # the class word decides, whichever fold saw which text
    assert (np.exp(logits[:, 2]) < 1e-5).all()  # a class no text has: (almost) no probability
    unique = [f"word{i}" for i in range(80)]  # every text its own vocabulary: out of fold, nothing is known
    blind = tfidf.cross_fitted(unique, labels, classes=2, strength=10.0)
    assert np.allclose(np.exp(blind), 0.5, atol=0.05)


def test_a_teacher_known_by_its_outputs_repeats_them_for_copies_and_cannot_run() -> None:
    from squeezer.compressors.distill.teacher_outputs import Known, TeacherOutputs

    logits = torch.randn(6, 2)
    outputs = TeacherOutputs([Known(logits)], torch.zeros(18, 4, dtype=torch.long))  # the rows and 2 copies
    assert torch.equal(outputs.logits(0), logits.repeat(3, 1))
    with pytest.raises(RuntimeError, match="known only by its outputs"):
        Known(logits)(torch.zeros(1, 4))
    with pytest.raises(ValueError, match="none for 7 inputs"):
        Known(logits).on(7)
