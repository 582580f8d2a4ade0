"""Scoring: a profile becomes a score, a threshold decision and perhaps an alert.

``detectors`` are the anomaly models, ``baselines`` the workload → namespace → cluster
hierarchy, ``thresholds`` the per-namespace cut, ``guards`` the rules no model may learn
away, ``rules`` the static-rule baseline for comparison, ``scorer`` wires them per batch.
"""
