"""Config format: cerberus schemas, validation, and the validated model."""

from .errors import ConfigError, Problem, RenderError, SecretNotFound, SwapyardError
from .model import Instance, RepoConfig, SecretRef
from .validate import load_repo

__all__ = [
    "ConfigError",
    "Instance",
    "Problem",
    "RenderError",
    "RepoConfig",
    "SecretNotFound",
    "SecretRef",
    "SwapyardError",
    "load_repo",
]
