"""Alerts: the typed alert an analyst reads (``alert``) and incident folding (``incidents``)."""
