"""Augmented copies of training texts for distillation (``distill.augment``): each copy of a text has one of token
dropout, token swap or span masking applied to its token ids; the teacher labels the copies with its soft outputs,
so a student learns from more inputs than the user has labels for (as in TinyBERT's and DistilBERT's data
augmentation, done here on token ids: the tokenizer's special tokens and the padding stay where they are).

The copies depend only on the training ids, the count and the study's seed: the teacher's outputs on them are cached
like its other outputs."""

from __future__ import annotations

import torch

from squeezer.search.data.split import Tokens

#: The share of a text's words each operation touches.
DROP, SWAP, SPAN = 0.1, 0.1, 0.15
OPERATIONS = ("dropout", "swap", "span")


def copies(ids: torch.Tensor, tokens: Tokens, count: int, seed: int) -> torch.Tensor:
    """``count`` augmented copies of every row of ``ids`` (N, L), copy by copy: (count·N, L). The tokenizer's
    special tokens ([CLS], [SEP], ...) and padding are never changed."""
    generator, special = torch.Generator().manual_seed(seed * 1_000_003 + 17), frozenset(tokens.special)
    out = []
    for _ in range(count):
        for row in ids:
            out.append(augment_row(row, tokens, generator, special))
    return torch.stack(out) if out else ids[:0]


def augment_row(row: torch.Tensor, tokens: Tokens, generator: torch.Generator,
                special: frozenset[int] = frozenset()) -> torch.Tensor:
    """One text's ids with one operation, drawn from ``generator``, applied to its words (padding and ``special``
    ids stay where they are)."""
    words = [i for i, t in enumerate(row.tolist()) if t != tokens.pad_id and t not in special]
    out = row.clone()
    if len(words) < 2:
        return out
    operation = OPERATIONS[int(torch.randint(len(OPERATIONS), (1,), generator=generator))]
    values = row[words]
    if operation == "dropout":  # the text closes up; padding fills its end
        drawn = torch.rand(len(words), generator=generator) < DROP
        dropped = {w for w, d in zip(words, drawn.tolist(), strict=True) if d}
        if len(dropped) == len(words):
            dropped.discard(words[0])  # never empty
        kept = [t for i, t in enumerate(row.tolist()) if i not in dropped and t != tokens.pad_id]
        return torch.tensor(kept + [tokens.pad_id] * (len(row) - len(kept)), dtype=row.dtype)
    if operation == "swap":
        for _ in range(max(1, round(SWAP * len(words)))):
            a, b = torch.randint(len(words), (2,), generator=generator).tolist()
            values[[a, b]] = values[[b, a]]
    else:  # span masking: a run of words becomes the mask token (or padding, where the tokenizer has none)
        width = max(1, round(SPAN * len(words)))
        start = int(torch.randint(len(words) - width + 1, (1,), generator=generator))
        values[start:start + width] = tokens.pad_id if tokens.mask_id is None else tokens.mask_id
    out[words] = values
    return out


__all__ = ["OPERATIONS", "augment_row", "copies"]
