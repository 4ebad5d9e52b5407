"""Search: studies, the trial runner, MLflow tracking and the Pareto front; wires spaces and compressors together."""
