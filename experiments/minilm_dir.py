"""The user's own fine-tuned MiniLM, as a Hugging Face directory, compressed by its own layers.

    python experiments/minilm_dir.py data/minilm_rt      # the user's fine-tuning: writes the directory
    squeezer search experiments/minilm_dir.yaml           # used as is: layers dropped, heads/FFN pruned, int8
    python experiments/text_target.py --study minilm_dir  # (or squeezer pareto) the front against the teacher

The first step stands in for what a user did elsewhere: all-MiniLM-L6-v2 (the packaged, offline copy) fine-tuned
with plain transformers code into a fresh/rotten classifier on Rotten Tomatoes sentences (the training rows the
study's split keeps for training, so that the study's validation and test sentences stay unseen), then
``save_pretrained`` with its tokenizer and its labels. Squeezer takes that directory as it is.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

HERE = Path(__file__).resolve().parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()
    from squeezer.search import data
    from squeezer.search.config.data_section import data_section
    from squeezer.search.models import text, zoo

    zoo.ready()  # before transformers, which imports torchvision when installed
    from transformers import AutoModelForSequenceClassification

    config = yaml.safe_load((HERE / "minilm_dir.yaml").read_text())
    tokenizer = text.tokenizer("all-MiniLM-L6-v2")
    # the study's own split (same seed and settings): the user's fine-tuning sees only its training rows
    splits = data.load(data_section(config["data"], HERE), config["seed"], tokenizer=tokenizer)
    labels = list(splits.classes)
    model = AutoModelForSequenceClassification.from_pretrained(
        text.model_dir("all-MiniLM-L6-v2"), num_labels=len(labels), id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)}, local_files_only=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5)
    torch.manual_seed(0)
    started = time.monotonic()
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(splits.train_x))
        for step, idx in enumerate(order.split(32)):
            ids = splits.train_x[idx]
            loss = model(input_ids=ids, attention_mask=(ids != splits.pad_id).long(), labels=splits.train_y[idx]).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if step % 20 == 0:
                print(f"epoch {epoch + 1} step {step}: loss {loss.item():.4f} ({time.monotonic() - started:.0f} s)",
                      flush=True)
    model.eval()
    with torch.no_grad():
        predicted = np.concatenate([model(input_ids=ids, attention_mask=(ids != splits.pad_id).long()).logits
                                    .argmax(1).numpy() for ids in splits.val_x.split(256)])
    print(f"validation accuracy {(predicted == splits.val_y.numpy()).mean():.4f}")
    model.save_pretrained(args.out)
    tokenizer.save_pretrained(args.out)
    print(f"saved to {args.out} in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
