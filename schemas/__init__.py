"""Config format: cerberus schemas, validation, and the validated model."""

from .errors import ConfigError, Problem, RenderError, SecretNotFound, SwapyardError
from .limits import DEFAULT_LIMITS, Limits
from .model import Instance, Project, RepoConfig, SecretRef
from .validate import check_repo, load_projects, load_repo

__all__ = [
    "DEFAULT_LIMITS",
    "ConfigError",
    "Instance",
    "Limits",
    "Problem",
    "Project",
    "RenderError",
    "RepoConfig",
    "SecretNotFound",
    "SecretRef",
    "SwapyardError",
    "check_repo",
    "load_projects",
    "load_repo",
]
