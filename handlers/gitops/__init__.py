"""The GitOps pipeline: mirror the repository, diff a push, export a commit, validate,
render and plan what changed."""
