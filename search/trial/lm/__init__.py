"""A language-model study's trials: what they share (``workbench``: the teacher, the text in blocks, its top-k
logits), and how a deployed causal LM is timed generating (``metrics``)."""
