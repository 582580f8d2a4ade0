"""Exceptions callers can catch by meaning. Subpackages add their own next to their code."""


class ChurnguardError(Exception):
    """Base of every error churnguard raises on purpose."""


class ConfigError(ChurnguardError):
    """A config, feature spec or command-line value is invalid; the message says which."""


class ModelError(ChurnguardError):
    """A model bundle is missing, tampered with, or does not match the feature spec."""
