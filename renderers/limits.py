"""limits.json: the instance's resource limits, for the provider that boots it.

`instance.cpus` and `instance.memory` say how much of the host an instance
may use. They travel inside the Ignition config, like everything else about
the instance, as `/opt/swapyard/limits.json`, so a provider reads them from
the one artifact it receives (the lxd driver turns them into `limits.cpu`
and `limits.memory`) and a change of a limit is a change of the instance: it
plans as `replace` and swaps. Only rendered when a limit is set, so
instances without one keep their artifacts and digests.
"""

from __future__ import annotations

import json

from schemas.model import Instance


def render_limits(instance: Instance) -> bytes:
    """`{"cpus": N, "memory_bytes": N}` (only the limits that are set), sorted, one line."""
    limits: dict[str, int] = {}
    if instance.cpus is not None:
        limits["cpus"] = instance.cpus
    if instance.memory_bytes is not None:
        limits["memory_bytes"] = instance.memory_bytes
    return (json.dumps(limits, sort_keys=True) + "\n").encode()
