"""One trial: what a study's trials share (data, teachers, their outputs), the recipe sampled, the student built,
compressed and measured."""
