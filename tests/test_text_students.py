"""Text students that start from what the teacher knows and hold up on long documents and few examples: the n-gram
student (hashing inside its ONNX graph), token tables projected from the teacher's and kept to the tokens seen in
training, head + tail truncation, augmented copies labelled by the teacher, and the bad input of each."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
import yaml

from squeezer.search import data, models
from squeezer.search.cli import main
from squeezer.search.data import token_augment
from squeezer.search.data.text import tokenize
from squeezer.search.models import words

from conftest import load_data, one_line
from test_text import minilm_tokenizer, refused, text_study, tiny_teacher  # noqa: F401 - fixtures

TOKENS = data.Tokens(vocab_size=50, pad_id=0, mask_id=3, special=(1, 2))


def test_the_ngram_student_hashes_bigrams_and_trigrams_and_ignores_padding() -> None:
    torch.manual_seed(0)
    model = models.build({"family": "ngram", "dim": 4, "buckets": 7, "trigrams": True}, (10,), 3,
                         tokens=TOKENS).eval()
    ids = torch.tensor([[1, 8, 15, 16, 2, 0, 0, 0, 0, 0]])
    with torch.no_grad():
        assert torch.allclose(model(ids), model(ids[:, :5]), atol=1e-6)
        # by hand: the mean of 5 tokens, 4 bigrams and 3 trigrams, normalised, then the linear layer
        assert not model.grams.weight.any()  # the n-grams start silent
        torch.nn.init.normal_(model.grams.weight)
        table, grams = model.words.embed.weight, model.grams.weight
        row = ids[0, :5]
        bigrams = [(int(a) * words.PRIMES[0] + int(b) * words.PRIMES[1]) % 7
                   for a, b in zip(row, row[1:], strict=False)]
        trigrams = [(int(a) * words.PRIMES[0] + int(b) * words.PRIMES[1] + int(c) * words.PRIMES[2]) % 7
                    for a, b, c in zip(row, row[1:], row[2:], strict=False)]
        mean = (table[row].sum(0) + grams[bigrams].sum(0) + grams[trigrams].sum(0)) / 12
        assert torch.allclose(model(ids)[0], model.classifier(model.norm(mean)), atol=1e-5)


def test_the_ngram_student_runs_in_onnx_runtime_with_its_hashing_inside_the_graph(tmp_path: Path) -> None:
    import onnx

    torch.manual_seed(0)
    model = models.build({"family": "ngram", "dim": 8, "buckets": 1000, "trigrams": True, "vocab": "seen"}, (12,), 2,
                         tokens=TOKENS, vocabulary=torch.tensor([0, 1, 2, 5, 6, 7, 9])).eval()
    path = tmp_path / "model.onnx"
    torch.onnx.export(model, (torch.zeros(1, 12, dtype=torch.int64),), path, dynamo=False, input_names=["ids"],
                      dynamic_axes={"ids": {0: "batch"}})
    ops = {node.op_type for node in onnx.load(path).graph.node}
    assert {"Mod", "Mul", "Gather"} <= ops  # the hash and the tables: the input is token ids, as for every student
    ids = torch.randint(0, 50, (5, 12))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        assert np.allclose(session.run(None, {"ids": ids.numpy()})[0], model(ids).numpy(), atol=1e-5)


def test_a_seen_only_table_keeps_the_training_tokens_and_reads_the_others_as_padding() -> None:
    torch.manual_seed(0)
    arch = {"family": "bag", "dim": 8, "hidden": 8, "vocab": "seen"}
    model = models.build(arch, (6,), 2, tokens=TOKENS, vocabulary=torch.tensor([0, 1, 2, 10, 11])).eval()
    assert model.words.embed.num_embeddings == 5  # padding + the 4 tokens seen
    whole = models.build({**arch, "vocab": "all"}, (6,), 2, tokens=TOKENS)
    assert whole.words.embed.num_embeddings == 50
    with torch.no_grad():  # token 33 was never seen in training: as if it were not there
        assert torch.allclose(model(torch.tensor([[1, 10, 33, 11, 2, 0]])), model(torch.tensor([[1, 10, 11, 2, 0, 0]])))


@pytest.mark.parametrize("family", ["bag", "textcnn", "ngram"])
def test_init_teacher_projects_the_teachers_token_table_onto_its_principal_components(
        family: str, tiny_teacher: Path) -> None:  # noqa: F811 - a fixture
    from sklearn.decomposition import PCA

    tokens = data.Tokens(vocab_size=30522, pad_id=0)
    teacher = models.build({"family": "hf", "model": str(tiny_teacher)}, (16,), 2, key="teacher", tokens=tokens)
    seen = torch.tensor([0, 101, 102, *range(2000, 2100)])
    arch = {"family": family, "dim": 4, "init": "teacher", "vocab": "seen"}
    student = models.build(arch, (16,), 2, tokens=tokens, teacher=teacher, vocabulary=seen)
    table = teacher.model.get_input_embeddings().weight.detach().numpy()[seen[1:]]
    expected = PCA(4).fit_transform(table)
    got = student.words.embed.weight.detach().numpy()[1:]
    assert np.allclose(np.abs(got), np.abs(expected), atol=1e-4)  # each component up to its sign
    assert not student.words.embed.weight[0].any()  # padding


def test_head_tail_truncation_keeps_a_quarter_from_the_start_and_the_rest_from_the_end(minilm_tokenizer) -> None:  # noqa: F811
    text = " ".join(f"w{i}" for i in range(40))
    whole = minilm_tokenizer(text, add_special_tokens=False)["input_ids"]
    row = tokenize([text], minilm_tokenizer, 18, "head_tail")[0].tolist()
    assert row[0] == minilm_tokenizer.cls_token_id and row[-1] == minilm_tokenizer.sep_token_id
    assert row[1:5] == whole[:4] and row[5:17] == whole[-12:]
    short = tokenize(["a fine film"], minilm_tokenizer, 18, "head_tail")
    assert (short == tokenize(["a fine film"], minilm_tokenizer, 18)).all()  # what fits is read whole, as by head


def test_the_texts_travel_through_the_split_row_for_row_with_their_ids(tmp_path: Path, minilm_tokenizer) -> None:  # noqa: F811
    rows = [f"review number {i} {'good' if i % 2 else 'bad'}" for i in range(60)]
    (tmp_path / "r.csv").write_text("text,label\n" + "".join(f"{t},{i % 2}\n" for i, t in enumerate(rows)))
    splits = load_data({"path": str(tmp_path / "r.csv"), "max_length": 12}, 3, tokenizer=minilm_tokenizer)
    for texts, ids in ((splits.texts.train, splits.train_x), (splits.texts.val, splits.val_x),
                       (splits.texts.test, splits.test_x)):
        assert len(texts) == len(ids)
        assert (tokenize(texts, minilm_tokenizer, 12) == ids.numpy()).all()


def test_augmented_copies_change_words_only_and_repeat_under_the_same_seed() -> None:
    ids = torch.tensor([[1, *range(10, 30), 2, 0, 0]] * 4)
    first, again = token_augment.copies(ids, TOKENS, 3, seed=5), token_augment.copies(ids, TOKENS, 3, seed=5)
    assert first.shape == (12, 24) and torch.equal(first, again)
    assert not torch.equal(first, token_augment.copies(ids, TOKENS, 3, seed=6))
    for row in first:
        assert row[0] == 1 and 2 in row.tolist()  # [CLS] first; [SEP] kept (a dropout closes the text up)
        words_kept = [t for t in row.tolist() if t not in (0, 1, 2, 3)]
        assert set(words_kept) <= set(range(10, 30)) and len(words_kept) >= 10
    assert sum(not torch.equal(row, ids[0]) for row in first) >= 10


def test_distillation_on_augmented_copies_labels_them_by_the_teacher_once_then_from_the_cache(
        tmp_path: Path, tiny_teacher: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    from squeezer.search.config.experiment import parse_config
    from squeezer.search.trial.run import run_trial
    from squeezer.search.trial.workbench import prepare

    monkeypatch.setenv("SQUEEZER_CACHE", str(tmp_path / "cache"))
    study = text_study(tmp_path, tiny_teacher)
    study["student"] = {"family": "ngram", "dim": 8, "buckets": 64}
    study["pipeline"] = [{"distill": {"epochs": 1, "augment": True, "augment_copies": 2}}]
    bench = prepare(parse_config(study))
    x, y, outputs = bench.copies(2)
    n = len(bench.splits.train_y)
    assert len(x) == len(y) == len(outputs.logits()) == 3 * n and torch.equal(x[:n], bench.splits.train_x)
    assert torch.equal(y[n:2 * n], bench.splits.train_y) and outputs.forward_passes == 1
    params = {"student": study["student"], "distill": {"epochs": 1, "augment": True, "augment_copies": 2}}
    assert 0 <= run_trial(bench, params, 0, tmp_path / "t0")["accuracy"] <= 1
    again = prepare(parse_config(study))
    assert again.copies(2)[2].forward_passes == 0  # the copies' soft labels come from the cache
    assert "loaded from cache" in capsys.readouterr().err


@pytest.mark.parametrize("change, key", [
    (lambda c: c.update(student={"family": "ngram", "buckets": 0}), "student.buckets"),
    (lambda c: c.update(student={"family": "ngram", "buckets": 1 << 30}), "student.buckets"),
    (lambda c: c.update(student={"family": "ngram", "trigrams": "yes"}), "student.trigrams"),
    (lambda c: c.update(student={"family": "bag", "vocab": "most"}), "student.vocab"),
    (lambda c: c.update(student={"family": "textcnn", "init": "glove"}), "student.init"),
    (lambda c: c["pipeline"][0]["distill"].update(augment=True, augment_copies=0), "distill.augment_copies"),
    (lambda c: c["pipeline"][0]["distill"].update(augment=True, augment_copies=-2), "distill.augment_copies"),
    (lambda c: c["pipeline"][0]["distill"].update(augment="often"), "distill.augment"),
    (lambda c: c["pipeline"][0]["distill"].update(augment=True, method="ema"), "distill.augment"),
    (lambda c: c["data"].update(truncation="middle"), "data.truncation"),
    (lambda c: c["data"].update(max_length=128, truncation="head_tail"), "data.max_length"),  # teacher: 64 positions
])
def test_bad_text_student_settings_exit_2_with_one_line_and_write_nothing(change, key: str, tmp_path: Path,
                                                                          tiny_teacher: Path, capsys) -> None:  # noqa: F811
    config = text_study(tmp_path, tiny_teacher)
    change(config)
    refused(config, tmp_path, key, capsys)


def test_augmenting_images_is_one_line(tmp_path: Path, capsys) -> None:
    config = yaml.safe_load((Path(__file__).parents[1] / "experiments" / "digits.yaml").read_text())
    config["pipeline"] = [{"distill": {"epochs": 1, "augment": True}}]
    (tmp_path / "d.yaml").write_text(yaml.safe_dump(config))
    assert main(["search", str(tmp_path / "d.yaml")]) == 2
    one_line(capsys.readouterr().err, "distill.augment")


def test_texts_tfidf_cannot_read_leave_the_study_without_a_baseline_and_say_why(
        tmp_path: Path, minilm_tokenizer) -> None:  # noqa: F811
    from squeezer.search.trial import tfidf

    rows = "".join(f"{'x y z' if i % 2 else 'q r s'},{i % 2}\n" for i in range(40))  # one-letter words only
    (tmp_path / "letters.csv").write_text("text,label\n" + rows)
    splits = load_data({"path": str(tmp_path / "letters.csv"), "max_length": 8}, 0, tokenizer=minilm_tokenizer)
    with pytest.raises(tfidf.Unmeasured, match="vocabulary"):
        tfidf.measure(splits)
