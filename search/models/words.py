"""Cheap text students over the teacher's token ids: an embedding bag, a 1-D CNN and an n-gram model (fastText-style:
unigram and hashed bigram / trigram embeddings, averaged, then a linear layer).

Each starts its token embeddings at random or from the teacher's (``init: teacher``: the teacher's token embedding
table projected onto its ``dim`` principal components), over the whole tokenizer vocabulary or only the tokens the
training texts use (``vocab: seen``: most of a 30k-row table is never read, and it is most of a small student's
bytes; an index in the model maps every other token to padding, so the deployed model still takes the teacher's
token ids).
"""

from __future__ import annotations

import torch
from torch import nn

from squeezer.search.data import Tokens
from squeezer.search.errors import ConfigError
from squeezer.search.models.checks import check

INITS = ("random", "teacher")
VOCABS = ("all", "seen")
#: Multipliers of the n-gram hash (odd primes): bucket = (a·P1 + b·P2 [+ c·P3]) mod buckets, in int64.
PRIMES = (1_000_003, 999_983, 1_000_033)
MAX_BUCKETS = 1 << 22


class Words(nn.Module):
    """Token embeddings over the teacher's token ids. ``vocabulary``: the ids the training texts use, for ``seen``
    (None: every id, as on the meta device or when a saved model is rebuilt: its saved tables replace these)."""

    def __init__(self, tokens: Tokens, dim: int, vocab: str, vocabulary: torch.Tensor | None) -> None:
        super().__init__()
        if vocab == "seen":
            cpu = torch.device("cpu")  # worked out on the CPU, also while the model is built on the meta device
            kept = torch.arange(tokens.vocab_size, device=cpu) if vocabulary is None else \
                vocabulary.to(cpu).long().unique()
            kept = kept[kept != tokens.pad_id]
            index = torch.zeros(tokens.vocab_size, dtype=torch.int32, device=cpu)
            index[kept] = torch.arange(1, len(kept) + 1, dtype=torch.int32, device=cpu)
            self.register_buffer("index", index)
            self.embed, self.pad_row = nn.Embedding(len(kept) + 1, dim, padding_idx=0), 0
        else:
            self.index, kept = None, torch.arange(tokens.vocab_size, device="cpu")
            self.embed, self.pad_row = nn.Embedding(tokens.vocab_size, dim, padding_idx=tokens.pad_id), tokens.pad_id
        self.kept = kept  # the teacher's ids of the table's last rows, in order (not saved: for ``init`` only)

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each token's vector, and its row of the table (``pad_row``: padding, or a token the training never saw)."""
        rows = ids if self.index is None else self.index[ids].long()
        return self.embed(rows), rows

    @torch.no_grad()
    def start_from(self, table: torch.Tensor) -> None:
        """Set the embeddings to the teacher's ``table`` (vocab x width) projected onto its leading principal
        components (fitted on the rows this model keeps), in the teacher's units (scaled to a fresh table's spread
        instead, a bag student lost 3.6 points on Rotten Tomatoes); dimensions beyond the teacher's width keep
        their start."""
        source = table.detach().float().cpu()[self.kept]
        centred = source - source.mean(0)
        _, vectors = torch.linalg.eigh(centred.T @ centred)  # ascending
        width = min(self.embed.embedding_dim, vectors.shape[1])
        target = self.embed.weight
        target[-len(self.kept):, :width] = (centred @ vectors[:, -width:].flip(1)).to(target.dtype)
        target[self.pad_row] = 0


def teacher_table(teacher: nn.Module | None) -> torch.Tensor:
    """The teacher's token embedding table (a Hugging Face model's input embeddings)."""
    model = getattr(teacher, "model", None)
    embeddings = getattr(model, "get_input_embeddings", lambda: None)()
    if not isinstance(embeddings, nn.Embedding):
        raise ConfigError("init", "teacher needs a Hugging Face teacher (family: hf), whose token embeddings it "
                          "starts from", type(teacher).__name__)
    return embeddings.weight


def _words(tokens: Tokens, dim: int, init: str, vocab: str, teacher: nn.Module | None,
           vocabulary: torch.Tensor | None) -> Words:
    check(dim >= 1, "dim", "must be >= 1", dim)
    check(init in INITS, "init", f"must be one of {list(INITS)}", init)
    check(vocab in VOCABS, "vocab", f"must be one of {list(VOCABS)} (every token of the tokenizer, or those the "
          "training texts use)", vocab)
    words = Words(tokens, dim, vocab, vocabulary)
    if init == "teacher" and teacher is not None:  # None: built on the meta device, for shapes only
        words.start_from(teacher_table(teacher))
    return words


class Bag(nn.Module):
    """Mean of the tokens' embeddings (padding excluded), then an MLP."""

    def __init__(self, words: Words, num_classes: int, hidden: int) -> None:
        super().__init__()
        self.words = words
        dim = words.embed.embedding_dim
        self.head = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        vectors, rows = self.words(ids)
        mask = (rows != self.words.pad_row).unsqueeze(2).to(vectors.dtype)
        return self.head((vectors * mask).sum(1) / mask.sum(1).clamp(min=1))


def bag(input_shape: tuple[int, ...], num_classes: int, *, tokens: Tokens, teacher: nn.Module | None = None,
        vocabulary: torch.Tensor | None = None, dim: int = 64, hidden: int = 64, init: str = "random",
        vocab: str = "all") -> Bag:
    """Embedding bag: the cheapest text student (no word order)."""
    check(hidden >= 1, "hidden", "must be >= 1", hidden)
    return Bag(_words(tokens, dim, init, vocab, teacher, vocabulary), num_classes, hidden)


class TextCNN(nn.Module):
    """Token embeddings, one 1-D convolution, max over the non-padding positions, a linear classifier."""

    def __init__(self, words: Words, num_classes: int, channels: int, kernel: int) -> None:
        super().__init__()
        self.words = words
        self.conv = nn.Conv1d(words.embed.embedding_dim, channels, kernel, padding=kernel // 2)
        self.act = nn.ReLU()
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        vectors, rows = self.words(ids)
        features = self.act(self.conv(vectors.transpose(1, 2)))
        padding = (rows == self.words.pad_row).unsqueeze(1)  # a comparison, not a negation: int8 observers skip it
        return self.classifier(features.masked_fill(padding, 0.0).amax(2))


def textcnn(input_shape: tuple[int, ...], num_classes: int, *, tokens: Tokens, teacher: nn.Module | None = None,
            vocabulary: torch.Tensor | None = None, dim: int = 64, channels: int = 64, kernel: int = 3,
            init: str = "random", vocab: str = "all") -> TextCNN:
    """A small CNN over the teacher's tokens (n-gram detectors, order within ``kernel`` tokens)."""
    check(channels >= 1, "channels", "must be >= 1", channels)
    check(kernel in (1, 3, 5, 7), "kernel", "must be one of [1, 3, 5, 7]", kernel)
    return TextCNN(_words(tokens, dim, init, vocab, teacher, vocabulary), num_classes, channels, kernel)


class NGram(nn.Module):
    """fastText-style: the mean of the tokens' embeddings and of their hashed bigrams' (and trigrams') embeddings,
    then one linear layer. The hash is integer arithmetic on the token ids inside the model (ONNX ``Mul``, ``Add``,
    ``Mod``), so the deployed model takes the token ids every text student takes."""

    def __init__(self, words: Words, num_classes: int, buckets: int, trigrams: bool) -> None:
        super().__init__()
        self.words, self.buckets, self.trigrams = words, buckets, trigrams
        self.grams = nn.Embedding(buckets, words.embed.embedding_dim)
        nn.init.zeros_(self.grams.weight)  # the n-grams start silent: at first the student is its words' mean
        # the mean normalised before the linear layer: whatever the scale of the tables (a teacher's is small), the
        # classifier starts with inputs of unit spread (fastText instead trains at learning rates of 0.1 to 1)
        self.norm = nn.LayerNorm(words.embed.embedding_dim)
        self.classifier = nn.Linear(words.embed.embedding_dim, num_classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        vectors, rows = self.words(ids)
        valid = rows != self.words.pad_row
        total = (vectors * valid.unsqueeze(2).to(vectors.dtype)).sum(1)
        count = valid.sum(1)
        orders = ((ids[:, :-1], ids[:, 1:]),) + (((ids[:, :-2], ids[:, 1:-1], ids[:, 2:]),) if self.trigrams else ())
        for order in orders:
            width = order[0].shape[1]
            hashed = sum(part * prime for part, prime in zip(order, PRIMES, strict=False))
            both = valid[:, :width]
            for k in range(1, len(order)):
                both = both & valid[:, k:k + width]
            grams = self.grams(torch.remainder(hashed, self.buckets))
            total = total + (grams * both.unsqueeze(2).to(grams.dtype)).sum(1)
            count = count + both.sum(1)
        return self.classifier(self.norm(total / count.clamp(min=1).unsqueeze(1).to(total.dtype)))


def ngram(input_shape: tuple[int, ...], num_classes: int, *, tokens: Tokens, teacher: nn.Module | None = None,
          vocabulary: torch.Tensor | None = None, dim: int = 64, buckets: int = 100_000, trigrams: bool = False,
          init: str = "random", vocab: str = "all") -> NGram:
    """An n-gram student: token and hashed bigram (``trigrams``: and trigram) embeddings of ``dim``, averaged, then
    a linear layer; ``buckets`` rows for the hashed n-grams."""
    check(isinstance(buckets, int) and not isinstance(buckets, bool) and 1 <= buckets <= MAX_BUCKETS, "buckets",
          f"must be an integer in [1, {MAX_BUCKETS}] (rows of the hashed n-gram table)", buckets)
    check(isinstance(trigrams, bool), "trigrams", "must be true or false", trigrams)
    check(input_shape[0] >= 3 or not trigrams, "trigrams", "needs data.max_length >= 3", trigrams)
    return NGram(_words(tokens, dim, init, vocab, teacher, vocabulary), num_classes, buckets, trigrams)


__all__ = ["Bag", "INITS", "NGram", "TextCNN", "VOCABS", "Words", "bag", "ngram", "teacher_table", "textcnn"]
