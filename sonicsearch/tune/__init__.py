"""Hyperparameter search with Optuna: the study runner (study), the YAML search space
(space), secondary objectives (objectives) and the report (report)."""
