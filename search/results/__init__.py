"""What a study leaves: MLflow tracking, the Pareto front and its scoring, tables and plots, the review view, picking
and exporting a member."""
