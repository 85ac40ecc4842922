"""A worker that SIGKILLs itself in the middle of a swap (at the step named), on any driver.

Run as `python -m tests.deploy.swap.killed_worker DRIVER STATE_DIR OPTIONS DB IMAGE PROJECT STEP
[DNS]`: DRIVER is a registered provider name, OPTIONS the JSON of its constructor keywords
(lists become tuples), IMAGE the test image of the fixture instance, DNS the JSON of a
`DnsSpec` (`tests.deploy.dns.servers.rfc2136_spec`) when the records follow the swap.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import sys

from deploy.dns.records import DnsSpec
from deploy.providers.registry import get_driver
from deploy.swap.engine import SwapEngine
from deploy.swap.sqljournal import SqlJournal
from tests.deploy.dns.servers import open_test_dns
from tests.deploy.fixtures import make_ignition, make_spec


def main(
    driver: str,
    state_dir: str,
    options: str,
    db: str,
    image: str,
    project: str,
    step: str,
    dns: str = "",
) -> None:
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(options).items()}
    provider = get_driver(driver)(state_dir, **kwargs)

    def on_step(_swap_id: int, name: str) -> None:
        if name == step:
            os.kill(os.getpid(), signal.SIGKILL)

    engine = SwapEngine(
        provider, SqlJournal(db), on_step=on_step, ready_timeout=120, open_dns=open_test_dns
    )
    ignition = make_ignition(image, "v2", units=driver == "lxd")
    spec = make_spec(project, ignition, "d" * 40)
    engine.deploy(dataclasses.replace(spec, dns=DnsSpec.from_json(json.loads(dns or "null"))))


if __name__ == "__main__":
    main(*sys.argv[1:])
