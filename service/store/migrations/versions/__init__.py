"""Schema revisions, oldest first by `down_revision`; see docs/service.md to write one."""
