"""Benchmark: render time of a 100-app instance, and load/render of a 200-instance repo.

Not a test: it prints figures and asserts nothing about time. The goal is a
100-app instance rendered in under 100 ms. The cloud-init user-data (what the
lxd provider adds to a render) is timed on the same instance's Ignition config
and given as a ratio to the render itself.

    .venv/bin/python bench/render.py [--repeat N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import schemas
from renderers import RenderOptions, render_instance
from renderers.cloudinit import render_cloudinit

CATALOG_KINDS = ("ghost", "wordpress", "nextcloud", "vaultwarden", "forgejo", "uptime-kuma")


def _catalog_app(kind: str, name: str, domain: str) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    if kind in ("ghost", "wordpress"):
        settings = {"db_password": f"secret:{name}_db", "db_root_password": f"secret:{name}_root"}
    elif kind == "nextcloud":
        settings = {"admin_password": f"secret:{name}_admin", "db_password": f"secret:{name}_db"}
    elif kind == "vaultwarden":
        settings = {"admin_token": f"secret:{name}_token"}
    return {"name": name, "catalog": kind, "domains": [domain], "settings": settings}


def _custom_app(name: str, domain: str, index: int) -> dict[str, Any]:
    return {
        "name": name,
        "image": f"ghcr.io/example/{name}:1.{index}.0",
        "port": 8000 + index,
        "domains": [domain],
        "path": "/" if index % 3 else f"/p{index}",
        "env": {"LOG_LEVEL": "info", "INDEX": str(index)},
        "secrets": {"API_KEY": f"secret:{name}_key"},
        "data": ["/var/lib/app"],
        "services": [
            {
                "name": "db",
                "image": "postgres:16.6-alpine",
                "secrets": {"POSTGRES_PASSWORD": f"secret:{name}_db"},
                "data": ["/var/lib/postgresql/data"],
                "healthcheck": {"command": ["pg_isready"], "interval": 10},
            }
        ],
    }


def apps_config(apps: int, prefix: str) -> dict[str, Any]:
    """An apps.config with `apps` apps: half custom, half from the catalog."""
    out = []
    for i in range(apps):
        domain = f"{prefix}{i // 2}.example.org"  # two apps per domain: paths get exercised
        if i % 2:
            kind = CATALOG_KINDS[(i // 2) % len(CATALOG_KINDS)]
            out.append(_catalog_app(kind, f"c{i}-{kind}"[:30], f"{prefix}c{i}.example.org"))
        else:
            out.append(_custom_app(f"a{i}", domain, i))
    return {"instance": {"size": "cx22", "region": "fsn1"}, "volume": {"size": "20G"}, "apps": out}


def write_repo(root: Path, instances: int, apps: int) -> None:
    """A config repository with `instances` instances of `apps` apps each."""
    (root / "swapyard.yaml").write_text(
        yaml.safe_dump({"projects": {"production": {"branches": ["main"], "instances": ["*"]}}})
    )
    for n in range(instances):
        directory = root / "instances" / f"i{n}"
        directory.mkdir(parents=True)
        config = apps_config(apps, f"i{n}-")
        (directory / "apps.config").write_text(yaml.safe_dump(config, sort_keys=False))


def median_ms(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        big = Path(tmp) / "big"
        big.mkdir()
        write_repo(big, instances=1, apps=100)
        load_big = median_ms(lambda: schemas.load_repo(big), args.repeat)
        (instance,) = schemas.load_repo(big).instances
        resolved = RenderOptions(mode="resolved", secrets=lambda name: f"value-of-{name}")
        redacted_ms = median_ms(lambda: render_instance(instance), args.repeat)
        resolved_ms = median_ms(lambda: render_instance(instance, resolved), args.repeat)
        artifacts = render_instance(instance)
        size = sum(len(data) for _, data in artifacts.files)
        ignition = render_instance(instance, resolved)["ignition.json"]
        cloudinit_ms = median_ms(lambda: render_cloudinit(ignition), args.repeat)
        user_data = len(render_cloudinit(ignition))

        many = Path(tmp) / "many"
        many.mkdir()
        write_repo(many, instances=200, apps=4)
        repeat = max(3, args.repeat // 5)
        load_many = median_ms(lambda: schemas.load_repo(many), repeat)
        repo = schemas.load_repo(many)
        render_all = median_ms(lambda: [render_instance(i) for i in repo.instances], repeat)

    counts = f"{len(instance.services)} services, {len(artifacts.files)} artifacts, {size} bytes"
    print(f"100-app instance ({counts}):")
    print(f"  load_repo          median {load_big:8.1f} ms")
    print(f"  render (redacted)  median {redacted_ms:8.1f} ms   goal < 100 ms")
    print(f"  render (resolved)  median {resolved_ms:8.1f} ms")
    print(
        f"  cloud-init         median {cloudinit_ms:8.1f} ms   "
        f"{cloudinit_ms / resolved_ms:.2f}x the resolved render ({user_data} bytes)"
    )
    print(f"200-instance repository (4 apps each, {len(repo.instances)} instances):")
    print(f"  load_repo          median {load_many:8.1f} ms")
    print(
        f"  render all         median {render_all:8.1f} ms "
        f"({render_all / len(repo.instances):.2f} ms per instance)"
    )


if __name__ == "__main__":
    main()
