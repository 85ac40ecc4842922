"""The worker: turns received deliveries into deployments and runs them, plus the loops
(missed pushes, the schedule leader, backups) that run beside it."""
