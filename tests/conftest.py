"""Shared fixtures: real digits data, a real trained teacher, real MLflow and Optuna stores in a temp dir."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
import yaml

from squeezer.compressors import TeacherOutputs, TrialContext
from squeezer.search import data, models
from squeezer.search.config.data_section import data_section
from squeezer.search.config.teacher_section import TeacherSpec, teacher_section
from squeezer.search.models import zoo
from squeezer.search.trial.teacher import train

zoo.ready()  # tests import transformers themselves, and it imports torchvision (see search/models/zoo.py)

REPO = Path(__file__).resolve().parents[1]
DIGITS_YAML = REPO / "experiments" / "digits.yaml"


def digits_config() -> dict:
    """The shipped digits experiment as a mapping, for tests to vary."""
    return yaml.safe_load(DIGITS_YAML.read_text())


def write_config(tmp_path: Path, config: dict | str) -> Path:
    """Write an experiment (a mapping, or raw YAML text) where the CLI can read it."""
    path = tmp_path / "experiment.yaml"
    path.write_text(config if isinstance(config, str) else yaml.safe_dump(config))
    return path


def load_data(section: dict, seed: int = 0, **kwargs) -> data.Splits:
    """``data.load`` of a data section written as in an experiment file (typed by ``data_section`` first)."""
    return data.load(data_section(section, Path(".")), seed, **kwargs)


def teacher_spec(section: dict) -> TeacherSpec:
    """A teacher section written as in an experiment file, typed."""
    return teacher_section(section, Path("."))


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test runs in its own directory with its own teacher cache, so nothing leaks between tests."""
    monkeypatch.setenv("SQUEEZER_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="session")
def digits() -> data.Splits:
    return load_data({"name": "digits", "val_fraction": 0.2, "test_fraction": 0.2}, seed=0)


@pytest.fixture(scope="session")
def teacher(digits: data.Splits) -> torch.nn.Module:
    model = models.build({"family": "mlp", "depth": 2, "width": 128}, digits.input_shape, digits.num_classes)
    return train(model, TeacherSpec("mlp", epochs=15, lr=3e-3), digits, seed=0, batch_size=64)


@pytest.fixture
def ctx(digits: data.Splits, teacher: torch.nn.Module) -> TrialContext:
    return TrialContext(digits.train_x, digits.train_y, digits.val_x, digits.val_y, teacher=teacher,
                        teachers=TeacherOutputs([teacher], digits.train_x), seed=0, batch_size=64)


def mlp_student(splits: data.Splits, width: int = 64, depth: int = 2) -> torch.nn.Module:
    torch.manual_seed(0)
    return models.build({"family": "mlp", "depth": depth, "width": width}, splits.input_shape, splits.num_classes)


def cnn_student(splits: data.Splits, channels: int = 8, hidden: int = 32) -> torch.nn.Module:
    torch.manual_seed(0)
    return models.build({"family": "cnn", "depth": 2, "channels": channels, "hidden": hidden}, splits.input_shape,
                        splits.num_classes)


def one_line(err: str, key: str) -> str:
    """The one line of a bad-input error: it names ``key`` (no key twice over), and nothing else was printed."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("squeezer: error: "), err[-2000:]
    assert key in lines[0] and "Traceback" not in err, lines[0]
    named = lines[0].removeprefix("squeezer: error: ").split(": ")[0].split(".")
    assert not any(named[i:i + 2] == named[j:j + 2] for i in range(len(named)) for j in range(i + 1, len(named))), \
        f"a key named twice: {lines[0]}"
    return lines[0]


def install_plugin(where: Path, monkeypatch: pytest.MonkeyPatch, module: str, source: str, group: str,
                   entry: str) -> None:
    """A package as pip would leave it: ``module``.py with ``source``, and a dist-info declaring ``entry``
    (``name = module:object``) in the entry-point ``group``; on sys.path for this test."""
    (where / f"{module}.py").write_text(source)
    dist = where / f"{module}-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module.replace('_', '-')}\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[{group}]\n{entry}\n")
    monkeypatch.syspath_prepend(str(where))


#: the tiny language model's corpus: random sentences of these words
WORDS = "the cat sat on a mat and dog ran to big red house with small blue car".split()


@pytest.fixture(scope="session")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with ``teacher/`` (a 4-layer Llama trained briefly on the corpus, with its tokenizer; its head size
    16, the least ONNX Runtime's GroupQueryAttention takes) and
    ``corpus.txt`` (60 documents apart by blank lines)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    where = tmp_path_factory.mktemp("lm")
    rng = random.Random(0)
    docs = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(30, 80))) + "." for _ in range(60)]
    (where / "corpus.txt").write_text("\n\n".join(docs))
    bpe = Tokenizer(models.BPE(unk_token=None))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(docs, trainers.BpeTrainer(vocab_size=300, special_tokens=["<s>", "</s>", "<pad>"],
                                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=64,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    ids = [i for d in docs for i in tokenizer(d)["input_ids"] + [tokenizer.eos_token_id]]
    blocks = torch.tensor(ids[: len(ids) // 32 * 32]).view(-1, 32)
    optimizer = torch.optim.AdamW(model.parameters(), 3e-3)
    for _ in range(120):
        x = blocks[torch.randint(len(blocks), (16,))]
        loss = model(input_ids=x, labels=x).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.save_pretrained(where / "teacher")
    tokenizer.save_pretrained(where / "teacher")
    return where
