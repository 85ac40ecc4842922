"""Renderers: a validated `Instance` in, a deterministic artifact set out.

Pure functions (no I/O, no clock, no environment): the same instance and
options give the same bytes and the same digest. The artifacts:

- `compose.yaml`   the docker compose project (see renderers.compose)
- `Caddyfile`      the instance's front proxy (see renderers.caddyfile)
- `units/*`        systemd units (see renderers.systemd)
- `ignition.json`  Ignition 3.4.0 holding everything above; the one artifact
                   a provider receives (see renderers.ignition)

Two modes: `redacted` shows each secret as a placeholder `<secret:NAME>` (for
plans, diffs, stored history and `swapyard render`); `resolved` puts the
values from a secret lookup in (only for handing to a provider).
"""
