"""Damage a real git repository the way crashes and failing disks do, for repair tests."""

from __future__ import annotations

import subprocess
from pathlib import Path


def loose(repo: Path, oid: str) -> Path:
    """The file of loose object `oid` in bare repository `repo`."""
    return repo / "objects" / oid[:2] / oid[2:]


def corrupt_packed(repo: Path, oid: str) -> None:
    """Overwrite the middle of packed object `oid`'s compressed data: git still finds it
    (its index is intact), but reading it fails."""
    for idx in (repo / "objects" / "pack").glob("pack-*.idx"):
        listing = subprocess.run(
            ["git", "show-index"], stdin=idx.open("rb"), capture_output=True, check=True
        ).stdout.decode()
        offsets = sorted((int(line.split()[0]), line.split()[1]) for line in listing.splitlines())
        pack = idx.with_suffix(".pack")
        ends = [o for o, _ in offsets[1:]] + [pack.stat().st_size - 20]  # the trailer
        for (start, found), end in zip(offsets, ends, strict=True):
            if found == oid:
                assert end - start > 64, f"object {oid} is too small to corrupt in place"
                with pack.open("r+b") as f:
                    f.seek(start + (end - start) // 2)
                    f.write(b"\xff" * 16)
                return
    raise AssertionError(f"object {oid} is in no pack of {repo}")
