"""Offline drivers: replay over files, evaluation against labels, training, tuning, capture."""
