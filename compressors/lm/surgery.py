"""Structural surgery on a decoder-only transformer of the Llama layout (Llama, Mistral, Qwen2 and others whose
layers are ``model.layers[i]`` with ``self_attn.{q,k,v,o}_proj`` and ``mlp.{gate,up,down}_proj``), as NVIDIA's
Minitron prunes: importance measured from activations on calibration text, then

- depth: whole layers dropped, keeping the most important (or every k-th);
- width: attention heads (whole key/value groups, so grouped-query attention stays consistent) and MLP channels
  dropped, the same count in every layer so the result is an ordinary model of its architecture (its config says the
  new sizes; ``save_pretrained`` / ``from_pretrained`` round-trip it);
- ``shrink``: a smaller model of the architecture (fewer layers, a narrower hidden size, fewer heads and channels)
  started from the teacher's weights: the hidden size projected onto the leading principal directions of the
  embedding (the norms' gains folded into the projections they feed), heads (of the teacher's head size, as Minitron
  keeps it) and channels kept by importance.

Importance (Muralidharan et al. 2024, "Compact Language Models via Pruning and Knowledge Distillation"): a layer's
is 1 - cos(its input, its output) averaged over tokens (Men et al.'s block influence); a head's is the mean L2 norm
of its output, an MLP channel's the mean magnitude of its activation."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import nn

from squeezer.compressors.base import InvalidConfig
from squeezer.compressors.transformer_prune import slice_linear, unit_rows


@dataclass(frozen=True)
class Importance:
    """Per layer: the layer's importance, its key/value groups' and its MLP channels'."""

    layers: torch.Tensor                # [L]
    groups: list[torch.Tensor]          # L x [kv_heads]
    channels: list[torch.Tensor]        # L x [intermediate]


#: The architectures (``config.model_type``) whose layers this surgery handles: RMSNorm gains multiplying the
#: normalised input, separate q/k/v and gate/up projections, plain embeddings. Others that look alike are not: Phi-3
#: fuses qkv_proj and gate_up_proj; Gemma's norms scale by 1 + w and its embeddings by sqrt(hidden).
LAYOUTS = ("llama", "mistral", "qwen2")
PROJECTIONS = {"self_attn": ("q_proj", "k_proj", "v_proj", "o_proj"), "mlp": ("gate_proj", "up_proj", "down_proj")}


def layers_of(model: nn.Module) -> nn.ModuleList:
    """The decoder layers of a Llama-layout causal LM; ``InvalidConfig`` for another layout."""
    kind = getattr(getattr(model, "config", None), "model_type", None)
    inner = getattr(model, "model", None)
    layers = getattr(inner, "layers", None)
    if kind not in LAYOUTS or not isinstance(layers, nn.ModuleList) or not layers or not all(
            all(isinstance(getattr(getattr(layer, part, None), name, None), nn.Linear) for name in names)
            for layer in layers for part, names in PROJECTIONS.items()):
        raise InvalidConfig("student", f"prunes and shrinks decoder models of the Llama layout ({', '.join(LAYOUTS)}: "
                            "model.layers[i] with self_attn.q/k/v/o_proj and mlp.gate/up/down_proj); this teacher "
                            f"is {kind or type(model).__name__}", type(model).__name__)
    return layers


@torch.no_grad()
def importance(model: nn.Module, calibration: torch.Tensor, batch: int = 8) -> Importance:
    """Activation importance of ``model``'s layers, key/value groups and MLP channels on ``calibration`` token ids
    ``[N, T]``."""
    layers = layers_of(model)
    config = model.config
    head_dim = _head_dim(config)
    groups = config.num_attention_heads // config.num_key_value_heads
    sums = {"layer": torch.zeros(len(layers)), "heads": [torch.zeros(config.num_attention_heads) for _ in layers],
            "channels": [torch.zeros(layer.mlp.down_proj.in_features) for layer in layers]}
    hooks = []

    def layer_hook(i: int):  # noqa: ANN202
        def hook(module: nn.Module, args: tuple, kwargs: dict, output: object) -> None:
            x = args[0] if args else kwargs["hidden_states"]
            y = output[0] if isinstance(output, tuple) else output
            sums["layer"][i] += (1 - nn.functional.cosine_similarity(x.float(), y.float(), dim=-1)).mean()
        return hook

    def heads_hook(i: int):  # noqa: ANN202
        def hook(module: nn.Module, args: tuple) -> None:
            x = args[0].float().unflatten(-1, (-1, head_dim))  # [B, T, heads, head_dim]
            sums["heads"][i] += x.norm(dim=-1).mean(dim=(0, 1))
        return hook

    def channels_hook(i: int):  # noqa: ANN202
        def hook(module: nn.Module, args: tuple) -> None:
            sums["channels"][i] += args[0].float().abs().mean(dim=(0, 1))
        return hook

    for i, layer in enumerate(layers):
        hooks += [layer.register_forward_hook(layer_hook(i), with_kwargs=True),
                  layer.self_attn.o_proj.register_forward_pre_hook(heads_hook(i)),
                  layer.mlp.down_proj.register_forward_pre_hook(channels_hook(i))]
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(calibration), batch):
            model(input_ids=calibration[start:start + batch].to(next(model.parameters()).device))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return Importance(sums["layer"], [h.view(-1, groups).sum(-1) for h in sums["heads"]], sums["channels"])


def kept_layers(count: int, total: int, by: str, scores: torch.Tensor | None) -> list[int]:
    """Which ``count`` of ``total`` layers to keep, in order: the most important (``by: importance``) or evenly
    spaced, first and last included (``by: every``)."""
    if by == "importance" and scores is not None:
        return sorted(torch.argsort(scores, descending=True)[:count].tolist())
    if count == 1:
        return [total - 1]
    return sorted({round(i * (total - 1) / (count - 1)) for i in range(count)})


def prune(model: nn.Module, keep_layers: int, groups_kept: int, channels_kept: int, by: str,
          scores: Importance | None) -> nn.Module:
    """A copy of ``model`` with ``keep_layers`` layers, ``groups_kept`` key/value groups (their query heads with
    them) and ``channels_kept`` MLP channels in each, chosen by ``scores`` (importance)."""
    model = copy.deepcopy(model)
    config, layers = model.config, layers_of(model)
    keep = kept_layers(keep_layers, len(layers), by, None if scores is None else scores.layers)
    head_dim = _head_dim(config)
    per_group = config.num_attention_heads // config.num_key_value_heads
    new_layers = []
    for new_index, old in enumerate(keep):
        layer = layers[old]
        attn, mlp = layer.self_attn, layer.mlp
        if groups_kept < config.num_key_value_heads:
            ranked = scores.groups[old] if scores is not None else torch.arange(config.num_key_value_heads, 0, -1)
            chosen = torch.argsort(ranked, descending=True)[:groups_kept].sort().values
            kv_rows = unit_rows(chosen, head_dim)
            q_rows = unit_rows(unit_rows(chosen, per_group), head_dim)  # the query heads of the kept groups
            attn.q_proj = slice_linear(attn.q_proj, rows=q_rows)
            attn.k_proj = slice_linear(attn.k_proj, rows=kv_rows)
            attn.v_proj = slice_linear(attn.v_proj, rows=kv_rows)
            attn.o_proj = slice_linear(attn.o_proj, cols=q_rows)
        if channels_kept < mlp.down_proj.in_features:
            ranked = scores.channels[old] if scores is not None else -torch.arange(mlp.down_proj.in_features).float()
            chosen = torch.argsort(ranked, descending=True)[:channels_kept].sort().values
            mlp.gate_proj = slice_linear(mlp.gate_proj, rows=chosen)
            mlp.up_proj = slice_linear(mlp.up_proj, rows=chosen)
            mlp.down_proj = slice_linear(mlp.down_proj, cols=chosen)
        attn.layer_idx = new_index  # the KV cache is indexed by layer
        new_layers.append(layer)
    model.model.layers = nn.ModuleList(new_layers)
    _set_sizes(config, layers=keep, heads=groups_kept * per_group, kv_heads=groups_kept,
               intermediate=channels_kept, head_dim=head_dim)
    for layer in new_layers:
        layer.self_attn.num_key_value_groups = per_group
    return model


@torch.no_grad()
def shrink(teacher: nn.Module, layers: int, hidden: int, heads: int, intermediate: int, by: str,
           scores: Importance | None) -> nn.Module:
    """A new model of ``teacher``'s architecture with these sizes, started from the teacher's weights: its layers
    ``kept_layers``, the hidden size projected onto the embedding's leading principal directions, the heads (of the
    teacher's head size) and MLP channels kept by importance, biases with their rows."""
    config = copy.deepcopy(teacher.config)
    old_layers = layers_of(teacher)
    old_hidden, old_head_dim = config.hidden_size, _head_dim(config)
    keep = kept_layers(layers, len(old_layers), by, None if scores is None else scores.layers)
    kv_heads = heads if config.num_key_value_heads == config.num_attention_heads else \
        max(1, heads * config.num_key_value_heads // config.num_attention_heads)
    if heads % kv_heads:
        kv_heads = heads
    _set_sizes(config, layers=keep, heads=heads, kv_heads=kv_heads, intermediate=intermediate,
               head_dim=old_head_dim, hidden=hidden)  # the head size kept, as Minitron does: attention carries over
    student = type(teacher)(config).to(next(teacher.parameters()).dtype)
    embed = teacher.get_input_embeddings().weight.float()
    basis = torch.linalg.svd(embed, full_matrices=False).Vh[:hidden].T if hidden < old_hidden else \
        torch.eye(old_hidden)[:, :hidden]  # [old_hidden, hidden]: the embedding's leading principal directions
    student.get_input_embeddings().weight.copy_(embed @ basis)
    scale = math.sqrt(old_hidden / hidden)
    same_heads = kv_heads <= config_kv(teacher)
    for new, old in zip(layers_of(student), keep, strict=True):
        source = old_layers[old]
        g_in, g_post = source.input_layernorm.weight.float(), source.post_attention_layernorm.weight.float()
        new.input_layernorm.weight.fill_(scale)
        new.post_attention_layernorm.weight.fill_(scale)
        if same_heads:
            per_group = teacher.config.num_attention_heads // config_kv(teacher)
            ranked = scores.groups[old] if scores is not None else torch.arange(config_kv(teacher), 0, -1).float()
            groups = torch.argsort(ranked, descending=True)[:kv_heads].sort().values
            kv_rows = unit_rows(groups, old_head_dim)
            q_rows = unit_rows(torch.cat([torch.arange(g * per_group, g * per_group + heads // kv_heads)
                                      for g in groups.tolist()]), old_head_dim)
            attn, src = new.self_attn, source.self_attn
            for name, rows in (("q_proj", q_rows), ("k_proj", kv_rows), ("v_proj", kv_rows)):
                into, source_proj = getattr(attn, name), getattr(src, name)
                into.weight.copy_(source_proj.weight.float()[rows] * g_in @ basis)
                _copy_bias(into, source_proj, rows=rows)  # Qwen2's q/k/v biases live in the heads' space
            attn.o_proj.weight.copy_(basis.T @ src.o_proj.weight.float()[:, q_rows])
            _copy_bias(attn.o_proj, src.o_proj, basis=basis)
        count = min(intermediate, source.mlp.down_proj.in_features)
        ranked = scores.channels[old] if scores is not None else -torch.arange(source.mlp.down_proj.in_features).float()
        chosen = torch.argsort(ranked, descending=True)[:count].sort().values
        mlp, src_mlp = new.mlp, source.mlp
        mlp.gate_proj.weight[:count].copy_(src_mlp.gate_proj.weight.float()[chosen] * g_post @ basis)
        mlp.up_proj.weight[:count].copy_(src_mlp.up_proj.weight.float()[chosen] * g_post @ basis)
        mlp.down_proj.weight[:, :count].copy_(basis.T @ src_mlp.down_proj.weight.float()[:, chosen])
        for name in ("gate_proj", "up_proj"):
            if getattr(src_mlp, name).bias is not None:
                getattr(mlp, name).bias[:count].copy_(getattr(src_mlp, name).bias.float()[chosen])
        _copy_bias(mlp.down_proj, src_mlp.down_proj, basis=basis)
        if count < intermediate:
            mlp.down_proj.weight[:, count:].zero_()  # new channels start silent: the teacher's function is kept
    final = teacher.model.norm.weight.float()
    student.model.norm.weight.copy_(scale * (basis * (final[:, None] * basis)).sum(0))
    if not config.tie_word_embeddings:
        student.get_output_embeddings().weight.copy_(teacher.get_output_embeddings().weight.float() @ basis)
    return student


def _copy_bias(into: nn.Linear, source: nn.Linear, rows: torch.Tensor | None = None,
               basis: torch.Tensor | None = None) -> None:
    """``source``'s bias into ``into``'s: its ``rows`` (outputs in the heads' space), or projected on ``basis``
    (outputs in the hidden space)."""
    if source.bias is None or into.bias is None:
        return
    bias = source.bias.float()
    into.bias.copy_(bias[rows] if rows is not None else bias @ basis if basis is not None else bias)


def config_kv(model: nn.Module) -> int:
    return int(model.config.num_key_value_heads)


def parameters(model: nn.Module) -> int:
    """The model's weights, counted once (tied ones once), packed integer weights counted as the weights they
    stand for (``weight_only``)."""
    packed = sum(m.in_features * m.out_features for m in model.modules() if hasattr(m, "qweight"))
    return sum(p.numel() for p in model.parameters()) + packed


def non_embedding_parameters(model: nn.Module) -> int:
    """Weights outside the token embedding and an untied output head: what a model's depth and width decide."""
    skip = {id(model.get_input_embeddings().weight)}
    head = model.get_output_embeddings()
    if head is not None:
        skip.add(id(head.weight))
    return parameters(model) - sum(p.numel() for p in model.parameters() if id(p) in skip)


def _head_dim(config: object) -> int:
    return int(getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads)


def _set_sizes(config: object, layers: list[int], heads: int, kv_heads: int, intermediate: int, head_dim: int,
               hidden: int | None = None) -> None:
    config.num_hidden_layers = len(layers)
    config.num_attention_heads, config.num_key_value_heads = heads, kv_heads
    config.intermediate_size, config.head_dim = intermediate, head_dim
    if hidden is not None:
        config.hidden_size = hidden
    types = getattr(config, "layer_types", None)
    if isinstance(types, list) and types:
        config.layer_types = [types[i] for i in layers]


__all__ = ["Importance", "importance", "kept_layers", "layers_of", "non_embedding_parameters", "parameters", "prune",
           "shrink"]
