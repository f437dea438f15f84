"""Hyperparameter tuning for PyTorch, built on Optuna."""
