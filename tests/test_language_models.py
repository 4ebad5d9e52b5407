"""Distilling a causal language model: a tiny Llama-architecture teacher with its own BPE tokenizer, made here, its
text in blocks, the students (the teacher pruned, a smaller model of its architecture), every loss and bit width, the
study end to end from the command line and from ``compress``, the export, and the bad inputs refused."""

from __future__ import annotations

import copy
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from conftest import WORDS, one_line
from squeezer.compressors.lm import LmContext, LmDistill, LmPrune, LmQuantize, TopK, losses, perplexity, surgery
from squeezer.compressors.lm import weight_only
from squeezer.search.cli import main
from squeezer.search.config.data_section import data_section
from squeezer.search.data import lm
from squeezer.search.errors import ConfigError
from squeezer.search.models import causal
from squeezer.search.runtime.lm import eager, genai, hf
from squeezer.search.trial.lm.metrics import perplexity as deployed_perplexity

@pytest.fixture(scope="session")
def teacher(made: Path) -> tuple[torch.nn.Module, object]:
    return causal.load_teacher(made / "teacher", "teacher.hf")


def experiment(folder: Path, made: Path, **sections: object) -> Path:
    """An experiment file for the made teacher and corpus (copied beside it), small enough to run in seconds."""
    for name in ("teacher", "corpus.txt"):
        if not (folder / name).exists():
            (shutil.copytree if (made / name).is_dir() else shutil.copyfile)(made / name, folder / name)
    config = {"name": "tiny-lm", "teacher": {"hf": "teacher"}, "data": {"path": "corpus.txt", "block_size": 32},
              "pipeline": [{"lm_prune": {"keep_layers": {"float": [0.25, 0.75]}, "mlp_ratio": 0.5}},
                           {"lm_distill": {"loss": {"choice": list(losses.LOSSES)}, "steps": 12, "eval_every": 6}},
                           {"lm_quantize": {"bits": {"choice": [32, 8, 4]}}}],
              "training": {"batch_size": 8},
              "measure": {"repeats": 10, "warmup": 5, "batch": 4, "prompt_tokens": 8, "new_tokens": 8}, **sections}
    path = folder / "experiment.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def context(teacher: torch.nn.Module, blocks: torch.Tensor, top_k: bool = True) -> LmContext:
    with torch.no_grad():
        cached = TopK.of(teacher(input_ids=blocks).logits, 16)
    return LmContext(train=blocks, val=blocks[:8], teacher=teacher, top_k=cached if top_k else None, batch_size=4,
                     pad_id=2)


def corpus_blocks(made: Path, tokenizer: object, size: int = 32) -> torch.Tensor:
    spec = data_section({"path": str(made / "corpus.txt"), "block_size": size}, made, language_model=True)
    return lm.load(spec, 0, tokenizer).train


# the losses

@pytest.mark.parametrize("name", losses.LOSSES)
def test_each_divergence_is_zero_between_equal_distributions_and_positive_otherwise(name: str) -> None:
    p = torch.randn(5, 7).log_softmax(-1)
    q = torch.randn(5, 7).log_softmax(-1)
    divergence = losses.DIVERGENCES[name]
    assert torch.allclose(divergence(p, p, beta=0.3, alpha=0.2), torch.zeros(5), atol=1e-6)
    assert (divergence(p, q, beta=0.3, alpha=0.2) > 0).all()


def test_skew_kl_without_skew_is_forward_kl_and_jsd_is_bounded_by_log_2() -> None:
    p, q = torch.randn(4, 9).log_softmax(-1), torch.randn(4, 9).log_softmax(-1)
    assert torch.allclose(losses.skew_kl(p, q, alpha=0.0), losses.forward_kl(p, q))
    far = torch.full((1, 2), -30.0)
    far[0, 0], other = 0.0, torch.tensor([[-30.0, 0.0]])
    assert losses.jsd(far, other, beta=0.5).item() <= math.log(2) + 1e-6


def test_a_top_k_support_keeps_the_rest_of_each_distribution_in_one_bin() -> None:
    student = torch.randn(2, 3, 50)
    teacher = torch.randn(2, 3, 50)
    values, indices = teacher.topk(5, dim=-1)
    rest = losses.rest_statistics(teacher, indices)
    t, s = losses.on_support(student, values, indices, 1.0, rest)
    assert t.shape == s.shape == (2, 3, 6)
    assert torch.allclose(t.exp().sum(-1), torch.ones(2, 3)) and torch.allclose(s.exp().sum(-1), torch.ones(2, 3))
    # the teacher's own bins are exact at T = 1: its top 5, and the mass of the other 45 tokens
    assert torch.allclose(t[..., :5].exp(), teacher.softmax(-1).gather(-1, indices), atol=1e-6)
    # a student that puts its mass outside the teacher's top k pays for it
    far = student.clone()
    far.scatter_(-1, indices, -20.0)
    assert (losses.forward_kl(*losses.on_support(far, values, indices, 1.0, rest))
            > losses.forward_kl(t, s)).all()


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0, 4.0])
def test_the_cached_loss_is_the_live_teachers_at_every_temperature(teacher, made, temperature) -> None:
    """What the cache keeps gives, at any temperature, the loss the live teacher's full logits give on the same
    support (its top k and the tempered mass of all its other tokens): cached and live training optimise one
    objective."""
    model, tokenizer = teacher
    blocks = corpus_blocks(made, tokenizer)[:8]
    with torch.no_grad():
        logits = model(input_ids=blocks).logits
    student = logits + torch.randn_like(logits)  # a student near the teacher, not the teacher
    cached = TopK.of(logits, 8)
    top = logits.topk(8, dim=-1)
    others = logits.scatter(-1, top.indices, float("-inf"))
    tempered = top.values / temperature
    total = torch.logaddexp(torch.logsumexp(tempered, -1), torch.logsumexp(others / temperature, -1)).unsqueeze(-1)
    exact = torch.cat([tempered - total, torch.logsumexp(others / temperature, -1, keepdim=True) - total], -1)
    for name in losses.LOSSES:
        t_log, s_log = losses.on_support(student, cached.values, cached.indices, temperature,
                                         (cached.rest, cached.rest_mean))
        live = losses.DIVERGENCES[name](exact, s_log).mean()
        assert float(losses.DIVERGENCES[name](t_log, s_log).mean()) == pytest.approx(float(live), rel=0.01), name
    # the rest's mass itself, where the old cache kept the T = 1 mass at every temperature
    assert torch.allclose(t_log[..., -1].exp(), exact[..., -1].exp(), atol=2e-3)


def test_jsd_at_its_ends_is_forward_and_reverse_kl() -> None:
    p, q = torch.randn(4, 9).log_softmax(-1), torch.randn(4, 9).log_softmax(-1)
    assert torch.allclose(losses.jsd(p, q, beta=0.0), losses.forward_kl(p, q))
    assert torch.allclose(losses.jsd(p, q, beta=1.0), losses.reverse_kl(p, q))


# the students

def test_pruning_the_teacher_keeps_the_important_layers_heads_and_channels_and_round_trips(teacher, tmp_path) -> None:
    model, tokenizer = teacher
    blocks = torch.randint(3, 100, (8, 16))
    pruned = LmPrune({"keep_layers": 0.5, "heads_ratio": 0.5, "mlp_ratio": 0.5}).apply(model, context(model, blocks))
    config = pruned.config
    assert (config.num_hidden_layers, config.num_key_value_heads, config.num_attention_heads,
            config.intermediate_size) == (2, 1, 2, 32)
    assert len(config.squeezer_layer_map) == 2 and model.config.num_hidden_layers == 4  # the teacher is untouched
    assert surgery.non_embedding_parameters(pruned) < surgery.non_embedding_parameters(model) / 3.9  # and norms
    hf.save(pruned, tokenizer, tmp_path / "pruned")
    from transformers import AutoModelForCausalLM

    again = AutoModelForCausalLM.from_pretrained(tmp_path / "pruned")
    assert torch.allclose(again(input_ids=blocks).logits, pruned(input_ids=blocks).logits, atol=1e-5)


def test_a_smaller_student_of_the_architecture_starts_from_the_teachers_weights(teacher, made) -> None:
    model, tokenizer = teacher
    blocks = corpus_blocks(made, tokenizer)
    student = causal.build({"family": "smaller", "layers": 2, "hidden": 16, "heads": 2, "intermediate": 0.5},
                           model, blocks[:8])
    assert (student.config.num_hidden_layers, student.config.hidden_size, student.config.num_attention_heads,
            student.config.intermediate_size, student.config.vocab_size) == (2, 16, 2, 32, model.config.vocab_size)
    torch.manual_seed(0)
    fresh = type(model)(copy.deepcopy(student.config))
    # the teacher's projected weights start nearer its function than a random model of the same shape
    assert perplexity(student, blocks[:16]) < perplexity(fresh, blocks[:16])


def test_a_student_family_must_keep_the_teachers_vocabulary(teacher) -> None:
    model, _ = teacher

    @causal.register("wrong_vocabulary")
    def wrong(teacher: torch.nn.Module, calibration: torch.Tensor) -> torch.nn.Module:
        config = copy.deepcopy(teacher.config)
        config.vocab_size = 10
        return type(teacher)(config)

    with pytest.raises(ConfigError, match="must share the teacher's vocabulary"):
        causal.build({"family": "wrong_vocabulary"}, model, torch.zeros(1, 4, dtype=torch.long))


def layout(kind: str, vocab: int = 300) -> torch.nn.Module:
    """A small random model of each layout handled: Llama tied, Qwen2 with q/k/v biases and an untied head, Mistral
    with grouped-query attention and an untied head."""
    from transformers import LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM, Qwen2Config, \
        Qwen2ForCausalLM

    sizes = dict(vocab_size=vocab, hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4,
                 num_key_value_heads=2, max_position_embeddings=64)
    torch.manual_seed(0)
    model = {"llama": lambda: LlamaForCausalLM(LlamaConfig(**sizes, tie_word_embeddings=True)),
             "qwen2": lambda: Qwen2ForCausalLM(Qwen2Config(**sizes, tie_word_embeddings=False)),
             "mistral": lambda: MistralForCausalLM(MistralConfig(**sizes, tie_word_embeddings=False))}[kind]()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "norm" in name or name.endswith("bias"):  # gains and biases far from their defaults
                parameter.add_(torch.randn_like(parameter) * 0.5)
    return model.eval()


@pytest.mark.parametrize("kind", ["llama", "qwen2", "mistral"])
def test_a_smaller_student_at_the_teachers_own_sizes_is_the_teacher(kind) -> None:
    model = layout(kind)
    ids = torch.randint(3, 300, (2, 16))
    same = causal.build({"family": "smaller"}, model, ids)
    with torch.no_grad():
        assert torch.allclose(same(input_ids=ids).logits, model(input_ids=ids).logits, atol=1e-4)
    narrow = causal.build({"family": "smaller", "layers": 2, "hidden": 48, "heads": 2, "intermediate": 0.5}, model,
                          ids)
    c = narrow.config
    assert (c.num_hidden_layers, c.hidden_size, c.num_attention_heads, c.head_dim) == (2, 48, 2, 16)  # head size kept
    if kind == "qwen2":
        kept = narrow.model.layers[0].self_attn.k_proj.bias
        assert torch.isin(kept, model.model.layers[narrow.config.squeezer_layer_map[0]].self_attn.k_proj.bias).all()


@pytest.mark.parametrize("kind", ["phi3", "gemma2", "qwen3"])
def test_a_teacher_of_a_layout_not_handled_is_refused_before_it_loads(made, tmp_path, capsys, kind) -> None:
    import transformers

    config = {"phi3": lambda: transformers.Phi3Config(pad_token_id=2),
              "gemma2": lambda: transformers.Gemma2Config(),
              "qwen3": lambda: transformers.Qwen3Config()}[kind]()
    config.architectures = [{"phi3": "Phi3ForCausalLM", "gemma2": "Gemma2ForCausalLM",
                             "qwen3": "Qwen3ForCausalLM"}[kind]]
    folder = tmp_path / kind
    config.save_pretrained(folder)  # no weights at all: they are never read
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(made / "teacher" / name, folder / name)
    path = experiment(tmp_path, made)
    raw = yaml.safe_load(path.read_text())
    raw["teacher"]["hf"] = kind
    path.write_text(yaml.safe_dump(raw))
    assert main(["search", str(path), "--trials", "1"]) == 2
    assert f"holds a {kind} model" in one_line(capsys.readouterr().err, "teacher.hf")
    assert not (tmp_path / "squeezer.db").exists()


def test_a_packed_model_missing_a_weight_does_not_load(teacher, tmp_path) -> None:
    from safetensors.torch import load_file, save_file

    model, tokenizer = teacher
    deployed = eager.deploy(LmQuantize({"bits": 4, "group_size": 16}).apply(model, None), tokenizer, tmp_path)
    weights = load_file(deployed.folder / "model.safetensors")
    weights.pop(next(k for k in weights if k.endswith("q_proj.qweight")))
    save_file(weights, deployed.folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(RuntimeError, match="q_proj.qweight"):
        weight_only.load(deployed.folder)


def test_a_prompt_is_the_prompt_of_prompt_response_pairs(teacher) -> None:
    from squeezer.compressors.lm.context import continue_prompts, prompt_lengths

    model, _ = teacher
    ids = torch.randint(3, 200, (3, 12))
    mask = torch.zeros(3, 12, dtype=torch.bool)
    mask[0, 5:], mask[1, 3:9], mask[2, 5:] = True, True, True  # prompts of 5, 3 and 5 tokens
    lengths = prompt_lengths(ids, mask, 8)
    assert lengths.tolist() == [5, 3, 5] and prompt_lengths(ids, None, 8).tolist() == [8, 8, 8]
    out, written = continue_prompts(model, ids, lengths, lambda n: 4, 2, do_sample=False)
    assert out.shape == (3, 9) and torch.equal(out[1, :3], ids[1, :3]) and torch.equal(out[0, :5], ids[0, :5])
    assert written.sum(-1).tolist() == [4, 4, 4] and written[1, 3:7].all() and not written[1, 7:].any()


def test_a_registered_family_that_changes_the_vocabulary_is_refused_before_anything_trains(made, tmp_path,
                                                                                          capsys) -> None:
    @causal.register("other_vocabulary")
    def other(teacher: torch.nn.Module, calibration: torch.Tensor) -> torch.nn.Module:
        config = copy.deepcopy(teacher.config)
        config.vocab_size = 12
        return type(teacher)(config)

    path = experiment(tmp_path, made, student={"family": "other_vocabulary"})
    assert main(["search", str(path), "--trials", "1"]) == 2
    one_line(capsys.readouterr().err, "student")
    assert not (tmp_path / "squeezer.db").exists()


# distillation

@pytest.mark.parametrize("settings", [
    {"loss": "forward_kl"}, {"loss": "reverse_kl"}, {"loss": "jsd", "beta": 0.3}, {"loss": "skew_kl", "alpha": 0.2},
    {"loss": "forward_kl", "teacher_outputs": "live", "hidden_weight": 1.0, "token_temperature": True},
    {"loss": "jsd", "on_policy_fraction": 0.5, "weighting": "dwa", "temperature_schedule": "linear"},
    {"loss": "forward_kl", "sequence_fraction": 0.5, "hard_weight": 0.5},
], ids=["forward_kl", "reverse_kl", "jsd", "skew_kl", "live+hidden+token_T", "on_policy+dwa", "sequence_level"])
def test_distilling_moves_the_pruned_student_towards_the_teacher(teacher, made, settings) -> None:
    model, tokenizer = teacher
    blocks = corpus_blocks(made, tokenizer)
    ctx = context(model, blocks)
    with torch.no_grad():
        continued = model.generate(blocks[:8, :8], max_new_tokens=24, min_new_tokens=24, do_sample=False,
                                   pad_token_id=2)
        top = TopK.of(model(input_ids=continued).logits, 16)
    mask = torch.zeros_like(continued, dtype=torch.bool)
    mask[:, 8:] = True
    from squeezer.compressors.lm import Sequences

    ctx.sequences = lambda: Sequences(continued, mask, top)
    student = LmPrune({"keep_layers": 0.5, "mlp_ratio": 0.5}).apply(model, ctx)
    before = perplexity(student, blocks)
    reports: list[dict] = []
    ctx.report = lambda step, metrics: reports.append(metrics)
    after = perplexity(LmDistill({**settings, "steps": 30, "eval_every": 10, "lr": 3e-3}).apply(student, ctx), blocks)
    assert after < before and len(reports) == 3 and "lm_distill.val_perplexity" in reports[-1]


def test_soft_targets_alone_from_cached_top_k_outputs_lower_the_perplexity(teacher, made) -> None:
    model, tokenizer = teacher
    blocks = corpus_blocks(made, tokenizer)
    with torch.no_grad():
        cached = TopK.of(model(input_ids=blocks).logits, 8)
    ctx = LmContext(train=blocks, val=blocks[:8], teacher=model, batch_size=4, top_k=cached)
    student = LmPrune({"keep_layers": 0.5, "mlp_ratio": 0.5}).apply(model, ctx)
    for loss in losses.LOSSES:
        trained = LmDistill({"loss": loss, "hard_weight": 0.0, "steps": 30, "lr": 3e-3}).apply(student, ctx)
        assert perplexity(trained, blocks) < perplexity(student, blocks), loss


def test_distilling_in_fp16_scales_the_loss(teacher, made, monkeypatch) -> None:
    """fp16 passes scale the loss (GradScaler) so that small gradients survive; the student still learns."""
    from squeezer.compressors.device import Device

    model, tokenizer = teacher
    blocks = corpus_blocks(made, tokenizer)
    ctx = context(model, blocks)
    ctx.device = Device(torch.device("cpu"), "fp16")
    scaled: list[float] = []
    original = torch.amp.GradScaler.scale
    monkeypatch.setattr(torch.amp.GradScaler, "scale",
                        lambda self, loss: scaled.append(self.get_scale()) or original(self, loss))
    student = LmPrune({"keep_layers": 0.5}).apply(model, ctx)
    trained = LmDistill({"steps": 12, "lr": 3e-3}).apply(student, ctx)
    assert len(scaled) == 12 and scaled[0] > 1 and perplexity(trained, blocks) < perplexity(student, blocks)


def test_a_prefill_computes_the_last_positions_logits_only(teacher, made, tmp_path) -> None:
    """Time to the first token is not biased against a student by logits nobody reads."""
    model, tokenizer = teacher
    deployed = eager.deploy(model, tokenizer, tmp_path)
    shapes: list[tuple] = []
    deployed.model.register_forward_hook(lambda module, args, out: shapes.append(tuple(out.logits.shape)))
    deployed.generate(corpus_blocks(made, tokenizer)[:2, :12], 3)
    assert shapes[0] == (2, 1, model.config.vocab_size)


def test_without_a_teacher_the_student_learns_from_the_text_alone(teacher, made) -> None:
    model, tokenizer = teacher
    blocks = corpus_blocks(made, tokenizer)
    ctx = context(model, blocks)
    student = LmPrune({"keep_layers": 0.25}).apply(model, ctx)
    ctx.teacher, ctx.top_k = None, None
    trained = LmDistill({"soft_weight": 0.0, "hard_weight": 1.0, "steps": 20, "lr": 3e-3}).apply(student, ctx)
    assert perplexity(trained, blocks) < perplexity(student, blocks)


# bits

def test_each_bit_width_of_the_torch_runtime_makes_the_weights_smaller_and_reloads_exactly(teacher, made,
                                                                                            tmp_path) -> None:
    model, tokenizer = teacher
    blocks = corpus_blocks(made, tokenizer)[:8]
    sizes, ppl = {}, {}
    for bits in (32, 16, 8, 4):
        marked = LmQuantize({"bits": bits, "group_size": 16}).apply(model, context(model, blocks))
        deployed = eager.deploy(marked, tokenizer, tmp_path / str(bits))
        folder = deployed.folder
        sizes[bits], ppl[bits] = deployed.size_bytes(), deployed_perplexity(deployed, blocks)
        again = hf.load(folder)  # what users load (bf16: its own rotary buffers)
        assert torch.allclose(again(input_ids=blocks).logits.float(), deployed.logits(blocks), atol=1e-4)
        assert ("squeezer.compressors.lm.weight_only" in (folder / "README.md").read_text()) == (bits in (8, 4))
    assert (folder / "generation_config.json").is_file()  # packed weights keep the generation settings too
    assert sizes[32] > sizes[16] > sizes[8] > sizes[4]
    assert abs(ppl[16] - ppl[32]) / ppl[32] < 0.02 and abs(ppl[8] - ppl[32]) / ppl[32] < 0.02
    assert abs(ppl[4] - ppl[32]) / ppl[32] < 0.2
    assert model.config.num_hidden_layers == 4 and not weight_only.is_quantized(model)  # the teacher untouched


def test_onnx_runtime_genai_deploys_each_bit_width_its_logits_those_of_the_model(teacher, made, tmp_path) -> None:
    model, tokenizer = teacher
    blocks = corpus_blocks(made, tokenizer)[:8]
    with torch.no_grad():
        expected = model(input_ids=blocks).logits
    sizes, ppl = {}, {}
    for bits, group in ((32, 32), (8, 32), (4, 32), (4, 16)):
        marked = LmQuantize({"bits": bits, "group_size": group}).apply(model, context(model, blocks))
        deployed = genai.deploy(marked, tokenizer, tmp_path / f"{bits}-{group}")
        assert {"genai_config.json", "model.onnx", "tokenizer.json"} <= {p.name for p in deployed.folder.iterdir()}
        sizes[bits, group], ppl[bits, group] = deployed.size_bytes(), deployed_perplexity(deployed, blocks)
        if bits == 32:  # the runtime computes what the model does
            assert torch.allclose(deployed.logits(blocks), expected, atol=1e-4)
        ttft, per_token = deployed.generate(blocks[:2, :8], 6)
        assert ttft > 0 and per_token > 0
    assert sizes[32, 32] > sizes[8, 32] > sizes[4, 32] and sizes[4, 16] > sizes[4, 32]  # smaller blocks: more scales
    assert abs(ppl[8, 32] - ppl[32, 32]) / ppl[32, 32] < 0.05 and abs(ppl[4, 16] - ppl[32, 32]) / ppl[32, 32] < 0.3


def test_onnx_runtime_genai_deploys_a_qwen2_with_biases_and_an_untied_head(tmp_path) -> None:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    model = Qwen2ForCausalLM(Qwen2Config(vocab_size=300, hidden_size=64, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                         tie_word_embeddings=False)).eval()
    with torch.no_grad():
        for layer in model.model.layers:  # biases far from zero: a builder that dropped them would show
            for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                proj.bias.normal_(0, 0.5)
    tokenizer = tiny_tokenizer(tmp_path)
    ids = torch.randint(3, 300, (2, 12))
    deployed = genai.deploy(LmQuantize({"bits": 32}).apply(model, None), tokenizer, tmp_path / "qwen")
    with torch.no_grad():
        assert torch.allclose(deployed.logits(ids), model(input_ids=ids).logits, atol=1e-4)


def tiny_tokenizer(folder: Path) -> object:
    """A byte-level BPE tokenizer of 300 tokens with no pad token, as many causal LMs ship."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE(unk_token=None))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator([" ".join(WORDS)] * 20, trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<s>", "</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>")


def test_an_int4_weight_packs_two_values_a_byte() -> None:
    linear = torch.nn.Linear(64, 8, bias=False)
    packed = weight_only.WeightOnlyLinear.from_linear(linear, 4, 32)
    assert packed.qweight.dtype == torch.uint8 and packed.qweight.shape == (8, 32)
    assert (packed.weight_float() - linear.weight).abs().max() <= linear.weight.abs().max() / 7


# text in blocks

def test_text_is_held_out_by_document_and_cut_into_blocks(made, teacher) -> None:
    _, tokenizer = teacher
    spec = data_section({"path": str(made / "corpus.txt"), "block_size": 16, "val_fraction": 0.2,
                         "test_fraction": 0.2}, made, language_model=True)
    splits = lm.load(spec, 0, tokenizer)
    assert splits.documents == (36, 12, 12) and splits.train.shape[1] == 16 and splits.train_mask is None
    again = lm.load(spec, 0, tokenizer)
    assert torch.equal(splits.val, again.val) and not torch.equal(splits.val, lm.load(spec, 1, tokenizer).val)


def test_prompt_response_pairs_count_the_response_tokens_only(tmp_path, teacher) -> None:
    _, tokenizer = teacher
    rows = [{"q": f"the cat {i}", "a": "sat on a mat"} for i in range(20)]
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = data_section({"path": "pairs.jsonl", "prompt_column": "q", "response_column": "a", "block_size": 24},
                        tmp_path, language_model=True)
    splits = lm.load(spec, 0, tokenizer)
    row, mask = splits.train[0], splits.train_mask[0]
    answer = tokenizer("sat on a mat", add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    assert row[mask].tolist() == answer  # the loss is on the response (and its end), not the prompt or padding


# a study end to end

def test_a_language_model_study_runs_from_the_command_line_and_exports_what_it_logged(made, tmp_path, capsys) -> None:
    path = experiment(tmp_path, made)
    assert main(["search", str(path), "--trials", "5"]) == 0
    out = capsys.readouterr().out
    assert "teacher: perplexity=" in out and "test_perplexity=" in out and "baselines:" in out
    assert "ppl" in out and "recommended:" in out
    import onnxruntime_genai as og
    import optuna

    study = optuna.load_study(study_name="tiny-lm", storage=f"sqlite:///{tmp_path}/squeezer.db")
    tested = {int(k): v for k, v in study.user_attrs["test_perplexity"].items()}
    assert {t.params.get("baseline") for t in study.trials[:2]} == {"int4", "int8"}  # the runtime's own builds
    number = max(tested, key=lambda n: study.trials[n].params.get("lm_quantize.bits", 4))  # int4 where it is all
    _, tokenizer = causal.load_teacher(made / "teacher", "teacher")
    spec = data_section({"path": "corpus.txt", "block_size": 32}, tmp_path, language_model=True)
    test = lm.load(spec, 0, tokenizer).test
    # the default format: the folder onnxruntime_genai loads, its perplexity on the test text the logged one
    assert main(["export", "--study-name", "tiny-lm", "--trial", str(number), "--out", str(tmp_path / "out")]) == 0
    model = og.Model(str(tmp_path / "out"))
    total = 0.0
    for row in test:
        params = og.GeneratorParams(model)
        params.set_search_options(max_length=len(row) + 1)
        generator = og.Generator(model, params)
        generator.append_tokens(row[None].numpy().astype("int32"))
        logits = torch.from_numpy(generator.get_output("logits")).float()
        total += float(torch.nn.functional.cross_entropy(logits[0, :-1], row[1:]))
    assert math.exp(total / len(test)) == pytest.approx(tested[number], rel=1e-3)
    og_tokenizer = og.Tokenizer(model)
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=12, do_sample=False)
    generator = og.Generator(model, params)
    generator.append_tokens(og_tokenizer.encode("the cat"))
    while not generator.is_done():
        generator.generate_next_token()
    assert og_tokenizer.decode(generator.get_sequence(0)).startswith("the cat")
    assert "perplexity" in (tmp_path / "out" / "README.md").read_text()
    # the save_pretrained folder: the student's weights as trained, which transformers loads and generates from
    assert main(["export", "--study-name", "tiny-lm", "--trial", str(number), "--out", str(tmp_path / "hf"),
                 "--format", "hf"]) == 0
    again = hf.load(tmp_path / "hf")
    text = tokenizer.decode(again.generate(**tokenizer("the cat", return_tensors="pt"), max_new_tokens=5,
                                           do_sample=False)[0])
    assert text.startswith("the cat") and "--format ort-genai" in (tmp_path / "hf" / "README.md").read_text()


def test_a_qwen2_study_with_biases_an_untied_head_and_no_pad_token_runs_in_onnx_runtime_genai(made, tmp_path,
                                                                                             capsys) -> None:
    """Qwen2's layout end to end: its q/k/v biases and untied head through shrink and the model builder, a tokenizer
    without a pad token, every student measured in ONNX Runtime GenAI."""
    tokenizer = tiny_tokenizer(tmp_path)
    layout("qwen2", vocab=len(tokenizer) + 16).save_pretrained(tmp_path / "qwen")  # room for the tokens Qwen2 adds
    tokenizer.save_pretrained(tmp_path / "qwen")
    path = experiment(tmp_path, made, student={"family": {"choice": {"teacher": {}, "smaller": {
        "layers": 1, "hidden": 48, "heads": 2, "intermediate": 0.5}}}},
                      pipeline=[{"lm_distill": {"steps": 4, "eval_every": 2}}, {"lm_quantize": {"bits": 4}}])
    raw = yaml.safe_load(path.read_text())
    raw["teacher"]["hf"] = "qwen"
    path.write_text(yaml.safe_dump(raw))
    assert main(["search", str(path), "--trials", "4"]) == 0
    captured = capsys.readouterr()
    assert "measured in torch" not in captured.err and "Pareto front" in captured.out
    import optuna

    study = optuna.load_study(study_name="tiny-lm", storage=f"sqlite:///{tmp_path}/squeezer.db")
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 4


def test_the_teachers_continuations_are_made_once_and_continue_each_prompt_to_the_block(made, tmp_path,
                                                                                       monkeypatch) -> None:
    from squeezer.search.config.experiment import load_config
    from squeezer.search.trial.lm.workbench import prepare

    monkeypatch.setenv("SQUEEZER_CACHE", str(tmp_path / "cache"))
    path = experiment(tmp_path, made, pipeline=[{"lm_distill": {"sequence_fraction": 0.5, "steps": 2}}])
    bench = prepare(load_config(path))
    made_now = bench.sequences()
    blocks = bench.splits.train
    assert made_now.ids.shape == (len(blocks), 32) and made_now.top_k.values.shape == (len(blocks), 32, 32)
    assert torch.equal(made_now.ids[:, :16], blocks[:, :16])  # plain text: a block's first 16 tokens, then its own
    assert made_now.mask[:, 16:].all() and not made_now.mask[:, :16].any()
    with torch.no_grad():
        expected = TopK.of(bench.teacher(input_ids=made_now.ids[:4]).logits, 32)
    assert torch.equal(made_now.top_k.indices[:4], expected.indices)
    assert torch.allclose(made_now.top_k.rest[:4], expected.rest, atol=1e-4)
    bench._sequences = None
    assert torch.equal(bench.sequences().ids, made_now.ids)  # the second time, from the study's cache


def test_a_language_model_study_runs_from_python(made, tmp_path) -> None:
    from squeezer.search import compress

    path = experiment(tmp_path, made)
    raw = yaml.safe_load(path.read_text())
    raw["data"]["path"] = str(tmp_path / "corpus.txt")
    raw["teacher"]["hf"] = str(tmp_path / "teacher")
    result = compress(raw, trials=3, storage=f"sqlite:///{tmp_path}/s.db", tracking_uri=f"sqlite:///{tmp_path}/m.db",
                      quiet=True)
    assert result.front and all(math.isfinite(m.perplexity) for m in result.front)
    assert result.recommended is not None and "test_perplexity" in result.recommended.metrics


def test_a_users_task_is_scored_by_the_most_likely_choice(made, teacher, tmp_path) -> None:
    model, tokenizer = teacher
    rows = [{"context": "the cat sat on", "choices": ["a", "house"], "answer": "a"},
            {"context": "the dog ran to", "choices": ["big", "sat"], "answer": 0}]
    (tmp_path / "task.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    path = experiment(tmp_path, made, objectives=["perplexity", "task_accuracy", "size_bytes"],
                      pipeline=[{"lm_distill": {"steps": 2}}, {"lm_quantize": {"bits": 32}}])
    config = yaml.safe_load(path.read_text())
    config["data"]["task_path"] = "task.jsonl"
    path.write_text(yaml.safe_dump(config))
    assert main(["search", str(path), "--trials", "1"]) == 0
    import optuna

    trial = optuna.load_study(study_name="tiny-lm", storage=f"sqlite:///{tmp_path}/squeezer.db").trials[0]
    assert 0 <= trial.user_attrs["metrics"]["task_accuracy"] <= 1
    questions = lm.task(tmp_path / "task.jsonl", tokenizer)
    from squeezer.search.trial.lm.workbench import task_accuracy

    assert task_accuracy(eager.deploy(model, tokenizer, tmp_path / "deployed"), questions) in (0.0, 0.5, 1.0)
    (tmp_path / "bad.jsonl").write_text(json.dumps({"context": "x", "choices": ["a", "b"], "answer": "c"}) + "\n")
    with pytest.raises(ConfigError, match="answer must be one of its choices"):
        lm.task(tmp_path / "bad.jsonl", tokenizer)


def test_a_language_model_object_and_a_factory_are_teachers_too(made, teacher, tmp_path) -> None:
    from squeezer.search import compress

    model, tokenizer = teacher
    path = experiment(tmp_path, made, pipeline=[{"lm_distill": {"steps": 4}}, {"lm_quantize": {"bits": 32}}])
    raw = yaml.safe_load(path.read_text())
    raw["data"]["path"] = str(tmp_path / "corpus.txt")
    del raw["teacher"]
    result = compress(raw, teacher=model, tokenizer=str(made / "teacher"), trials=3, quiet=True,
                      storage=f"sqlite:///{tmp_path}/s.db", tracking_uri=f"sqlite:///{tmp_path}/m.db")
    assert result.front and all(math.isfinite(m.perplexity) for m in result.front)
    with pytest.raises(ValueError, match="tokenizer: is needed with a causal language model teacher"):
        compress(raw, teacher=model, trials=1, storage=f"sqlite:///{tmp_path}/x.db")
    (tmp_path / "lms.py").write_text(
        "from transformers import AutoModelForCausalLM\n"
        f"def teacher():\n    return AutoModelForCausalLM.from_pretrained({str(made / 'teacher')!r})\n")
    raw["teacher"] = {"model": "lms.py:teacher", "tokenizer": str(made / "teacher")}
    path.write_text(yaml.safe_dump(raw))
    assert main(["search", str(path), "--trials", "3", "--study-name", "factory"]) == 0


def test_the_readme_command_runs_in_a_fresh_process(made, tmp_path) -> None:
    path = experiment(tmp_path, made, pipeline=[{"lm_distill": {"steps": 4}}, {"lm_quantize": {"bits": 8}}])
    done = subprocess.run([sys.executable, "-m", "squeezer.search.cli", "search", str(path), "--trials", "3"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Traceback" not in done.stderr and "Warning" not in done.stderr + done.stdout


# bad input

def test_a_teacher_of_another_layout_is_refused_in_one_line(made, tmp_path, capsys) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    path = experiment(tmp_path, made)
    gpt2 = tmp_path / "gpt2"
    GPT2LMHeadModel(GPT2Config(vocab_size=300, n_embd=32, n_layer=2, n_head=2, n_positions=64)).save_pretrained(gpt2)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(made / "teacher" / name, gpt2 / name)
    config = yaml.safe_load(path.read_text())
    config["teacher"]["hf"] = "gpt2"
    path.write_text(yaml.safe_dump(config))
    capsys.readouterr()  # what saving the model printed
    assert main(["search", str(path), "--trials", "1"]) == 2
    assert "Llama layout" in one_line(capsys.readouterr().err, "teacher")
    assert not (tmp_path / "squeezer.db").exists()


def teacher_without_tokenizer(folder: Path, made: Path) -> None:
    shutil.copytree(made / "teacher", folder / "teacher")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (folder / "teacher" / name).unlink()


@pytest.mark.parametrize("change, key", [
    (lambda c, f, m: c["data"].update(block_size=4096), "data.block_size"),
    (lambda c, f, m: c["data"].update(block_size=2), "data.block_size"),
    (lambda c, f, m: c["data"].update(prompt_column="q"), "data.response_column"),
    (lambda c, f, m: c["data"].update(path="missing.txt"), "data.path"),
    (lambda c, f, m: c["data"].update(max_length=12), "data.max_length"),
    (lambda c, f, m: (f / "short.txt").write_text("the cat.\n\n" * 10) and c["data"].update(path="short.txt"),
     "data.block_size"),
    (lambda c, f, m: (f / "one.txt").write_text("the cat sat.") and c["data"].update(path="one.txt"), "data.path"),
    (lambda c, f, m: c.update(pipeline=["distill"]), "pipeline[0]"),
    (lambda c, f, m: c.update(objectives=["accuracy", "size_bytes"]), "objectives"),
    (lambda c, f, m: c.update(student={"family": "mlp"}), "student.family"),
    (lambda c, f, m: c["pipeline"][1]["lm_distill"].update(loss="kl"), "lm_distill.loss"),
    (lambda c, f, m: c.update(measure={"runtime": "onnxruntime"}), "measure.runtime"),
    (lambda c, f, m: c["teacher"].update(hf="corpus.txt"), "teacher.hf"),
    (lambda c, f, m: (teacher_without_tokenizer(f / "t2", m), c["teacher"].update(hf="t2/teacher")), "teacher.hf"),
    (lambda c, f, m: c.update(student={"family": {"choice": {"smaller": {"hidden": 100000}}}}), "student.hidden"),
    (lambda c, f, m: c.update(student={"family": "smaller", "layers": 9}), "student.layers"),
    (lambda c, f, m: c.update(objectives={"perplexity": "maximize"}), "objectives.perplexity"),
    (lambda c, f, m: c["pipeline"][2]["lm_quantize"].update(bits=16), "lm_quantize.bits"),
    (lambda c, f, m: c["pipeline"][2]["lm_quantize"].update(bits=4, group_size=48), "lm_quantize.group_size"),
    (lambda c, f, m: c["pipeline"][1]["lm_distill"].update(soft_weight=0, hard_weight=1, on_policy_fraction=0.5),
     "lm_distill.on_policy_fraction"),
    (lambda c, f, m: c.update(measure={"runtime": "onnxruntime-genai", "device": "cuda"}), "measure.device"),
], ids=["block beyond positions", "block too small", "prompt without response", "missing text",
        "a classifier's setting", "text shorter than a block", "one document", "a classifier's compressor",
        "accuracy objective", "a classifier family", "unknown loss", "onnxruntime", "not a model folder",
        "no tokenizer", "hidden beyond the teacher's", "more layers than the teacher", "perplexity maximised",
        "bf16 on the CPU in genai", "a block size genai has not", "on-policy without the teacher's loss",
        "genai on a GPU without its CUDA package"])
def test_bad_language_model_input_is_one_line_and_writes_nothing(made, tmp_path, capsys, change, key) -> None:
    path = experiment(tmp_path, made)
    (tmp_path / "t2").mkdir()
    config = yaml.safe_load(path.read_text())
    change(config, tmp_path, made)
    path.write_text(yaml.safe_dump(config))
    assert main(["search", str(path), "--trials", "1"]) == 2
    one_line(capsys.readouterr().err, key)
    assert not (tmp_path / "squeezer.db").exists() and not (tmp_path / "mlflow.db").exists()


def test_a_teacher_the_builder_cannot_export_is_measured_in_torch_saying_so(made, tmp_path, capsys) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)  # a head size of 8: ONNX Runtime's GroupQueryAttention takes multiples of 16
    LlamaForCausalLM(LlamaConfig(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
                     ).save_pretrained(tmp_path / "narrow")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(made / "teacher" / name, tmp_path / "narrow" / name)
    path = experiment(tmp_path, made, pipeline=[{"lm_quantize": {"bits": 8}}])
    raw = yaml.safe_load(path.read_text())
    raw["teacher"]["hf"] = "narrow"
    path.write_text(yaml.safe_dump(raw))
    assert main(["search", str(path), "--trials", "2"]) == 0
    err = capsys.readouterr().err
    assert "ONNX Runtime GenAI cannot export this teacher" in err and "measured in torch" in err


# the search: Squeezer's sampler, successive halving and budgets, as for classifiers

def test_squeezer_sampler_screens_language_model_recipes_on_their_deployed_size(made, tmp_path) -> None:
    from squeezer.search.study.squeezer_sampler import WARMUP

    path = experiment(tmp_path, made, search={"sampler": "squeezer", "candidates": 3})
    trials = 2 + WARMUP + 2  # the two baselines first
    assert main(["search", str(path), "--trials", str(trials)]) == 0
    import optuna

    study = optuna.load_study(study_name="tiny-lm", storage=f"sqlite:///{tmp_path}/squeezer.db")
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * trials
    screened = [t for t in study.trials if t.user_attrs.get("screened")]
    assert screened and all(t.number >= 2 + WARMUP for t in screened)


def test_successive_halving_stops_language_model_students_on_their_perplexity(made, tmp_path) -> None:
    path = experiment(tmp_path, made, search={"sampler": "random", "scheduler": "halving"})
    config = yaml.safe_load(path.read_text())
    config["pipeline"][1]["lm_distill"]["lr"] = {"float": [1e-5, 1e-2], "log": True}  # some learn far slower
    path.write_text(yaml.safe_dump(config))
    assert main(["search", str(path), "--trials", "10"]) == 0
    import optuna

    study = optuna.load_study(study_name="tiny-lm", storage=f"sqlite:///{tmp_path}/squeezer.db")
    states = [t.state.name for t in study.trials]
    assert "PRUNED" in states and "COMPLETE" in states
    reasons = [t.user_attrs["stop_reason"] for t in study.trials if t.state.name == "PRUNED"]
    assert all(r.startswith("successive halving: after 1 evaluation(s), val perplexity") for r in reasons)


def test_size_budgets_refuse_unreachable_and_reject_language_model_students_before_they_train(made, tmp_path,
                                                                                              capsys) -> None:
    import optuna

    from squeezer.search.config.experiment import load_config
    from squeezer.search.study.budgets import smallest
    from squeezer.search.trial import benches

    path = experiment(tmp_path, made, constraints={"size_bytes": {"max": 1000}}, search={"sampler": "random"})
    assert main(["search", str(path), "--trials", "3"]) == 2  # no recipe of the space is that small
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]  # after the data's and the cache's lines: one line, naming budget and value
    assert last.startswith("squeezer: error: constraints.size_bytes.max: cannot be met by any recipe of the space: "
                           "the smallest reachable is ") and last.endswith("but got 1000.0") and "Traceback" not in err
    assert not (tmp_path / "squeezer.db").exists()
    least, _ = smallest(benches.prepare(load_config(path)), "size_bytes")
    path = experiment(tmp_path, made, constraints={"size_bytes": {"max": 1.2 * least}}, search={"sampler": "random"})
    assert main(["search", str(path), "--trials", "6"]) == 0
    study = optuna.load_study(study_name="tiny-lm", storage=f"sqlite:///{tmp_path}/squeezer.db")
    reasons = [t.user_attrs.get("fail_reason", "") for t in study.trials]
    assert any(r.startswith("TrialFailed: rejected before training") for r in reasons)  # fp32, or the teacher's size
    assert all(t.user_attrs["metrics"]["size_bytes"] <= 1.2 * least for t in study.trials if t.state.name == "COMPLETE")


# text and teacher outputs beyond memory

def test_text_is_tokenized_once_into_mapped_files_read_a_chunk_at_a_time(made, teacher, monkeypatch) -> None:
    """A .txt read 7 bytes at a time splits into the same documents as read whole; the blocks are memory-mapped
    from the cache, and a second load reads them from there without tokenizing again."""
    _, tokenizer = teacher
    spec = data_section({"path": str(made / "corpus.txt"), "block_size": 16}, made, language_model=True)
    whole = [p.strip() for p in (made / "corpus.txt").read_text().split("\n\n") if p.strip()]
    monkeypatch.setattr(lm, "CHUNK_BYTES", 7)
    assert list(lm.documents(spec)) == whole
    splits = lm.load(spec, 0, tokenizer)
    assert isinstance(splits.train.numpy().base, __import__("numpy").memmap) or splits.folder is not None
    assert (splits.folder / "train.npy").is_file()
    calls = []
    monkeypatch.setattr(lm._Encoder, "encode", lambda self, batch: calls.append(batch) or [])
    again = lm.load(spec, 0, tokenizer)
    assert not calls and torch.equal(again.train, splits.train) and again.fingerprint() == splits.fingerprint()


@pytest.mark.parametrize("stop_at", [2, 5])
def test_the_teachers_top_k_cache_resumes_where_it_stopped(made, tmp_path, capsys, monkeypatch, stop_at) -> None:
    from squeezer.search.config.experiment import load_config
    from squeezer.search.trial.lm import workbench

    monkeypatch.setattr(workbench, "SYNC_BYTES", 1)  # synced (and so resumable) after every batch of 16 blocks

    config = load_config(experiment(tmp_path, made))
    bench = workbench.prepare(config)
    whole = {name: getattr(bench.top_k, name).clone() for name in ("values", "indices", "rest", "rest_mean")}
    shutil.rmtree(bench.outputs / workbench.TOP_K_DIR)
    forward, calls = bench.teacher.forward, []

    def stopping(*args, **kwargs):  # the process stops while the cache is computed (Ctrl-C, a kill)
        calls.append(1)
        if len(calls) == stop_at:
            raise KeyboardInterrupt
        return forward(*args, **kwargs)
    bench.teacher.forward = stopping
    with pytest.raises(KeyboardInterrupt):
        workbench._top_k(bench)
    bench.teacher.forward = forward
    done = int((bench.outputs / workbench.TOP_K_DIR / "values.npy.done").read_text())
    assert done == (stop_at - 1) * 16  # the batches synced before it stopped
    capsys.readouterr()
    again = workbench._top_k(bench)
    assert f"resuming at block {done:,} of 106" in capsys.readouterr().err
    for name, values in whole.items():
        assert torch.equal(getattr(again, name), values), name


def test_a_top_k_cache_the_disk_cannot_hold_is_refused_before_it_is_computed(made, tmp_path, capsys,
                                                                             monkeypatch) -> None:
    import shutil as shutil_module
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil_module, "disk_usage", lambda path: usage(10**6, 10**6 - 1000, 1000))
    path = experiment(tmp_path, made)
    assert main(["search", str(path), "--trials", "1"]) == 2
    line = one_line(capsys.readouterr().err, "lm_distill.teacher_outputs")
    assert "MiB for the teacher's top-32 outputs" in line and "teacher_outputs: live" in line
    assert not (tmp_path / "squeezer.db").exists()


# on a GPU (skipped without one; experiments/gpu_check.sh runs them: pytest -m gpu)

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@CUDA
@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["optuna", "ray"])
def test_a_language_model_study_trains_on_the_gpu_in_bf16_several_trials_at_once(made, tmp_path, backend) -> None:
    """The teacher's outputs computed on the GPU, students distilled there in bf16; on Ray, two trials share it."""
    import optuna

    search = {"sampler": "random"} if backend == "optuna" else \
        {"sampler": "random", "backend": "ray", "gpus_per_trial": 0.5, "max_concurrent": 2}
    path = experiment(tmp_path, made, training={"batch_size": 8, "device": "cuda", "precision": "bf16"},
                      search=search)
    assert main(["search", str(path), "--trials", "6"]) == 0
    study = optuna.load_study(study_name="tiny-lm", storage=f"sqlite:///{tmp_path}/squeezer.db")
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 6
    trained = [t for t in study.trials if "baseline" not in t.params]
    assert all(t.user_attrs["metrics"]["perplexity"] < 300 for t in trained)  # the vocabulary's size: learnt
