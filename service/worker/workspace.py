"""What the event dispatcher and the deployment runner share: who claims, and where git works.

Both parts claim rows under expiring leases and read commits out of the
same mirrors, so they share one `Workspace`: the process's identity in a
lease (`owner`, one per thread, as sibling threads must never share a
lease), the lease length, the mirror cache, the scratch directory for
exported trees, the limits a pushed repository is read within and the
clone URL of a repository. The build (service.worker.build) makes one per
worker; a second worker in the same process (a test standing for a second
process) gets its own, so its leases are told apart.
"""

from __future__ import annotations

import tempfile
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from handlers.gitops.mirror import MirrorCache
from schemas.limits import Limits
from service.store.models import Event


@dataclass(frozen=True)
class Workspace:
    """The lease identity and git work area of one worker."""

    mirrors: MirrorCache
    work_dir: Path
    limits: Limits
    lease: float  # seconds a claim holds before another worker may take it
    repositories: Mapping[str, str]  # the `repositories` setting: name -> clone URL
    process_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    @property
    def owner(self) -> str:
        """Who holds a lease: this worker and thread (sibling threads must not share one)."""
        return f"{self.process_id}/{threading.get_ident()}"

    def clone_url(self, event: Event) -> str:
        """Where the event's repository is fetched from: the setting first, then the payload."""
        return self.repositories.get(event.repository or "") or event.clone_url or ""

    def scratch(self) -> tempfile.TemporaryDirectory[str]:
        """A temporary directory for one exported tree, removed when left."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        return tempfile.TemporaryDirectory(dir=self.work_dir)
