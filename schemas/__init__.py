"""Config format: cerberus schemas, validation, and the validated model."""

from schemas.errors import ConfigError, Problem, RenderError, SecretNotFound, SwapyardError
from schemas.limits import DEFAULT_LIMITS, Limits
from schemas.model import Instance, Project, RepoConfig, SecretRef
from schemas.validate import check_repo, load_projects, load_repo

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
