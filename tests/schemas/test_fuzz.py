"""Property-based: validate and render end in a model or a ConfigError, never a traceback."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from renderers import RenderOptions, render_instance
from schemas import ConfigError, load_repo
from schemas.apps_config import APP, APPS_CONFIG, BACKUP, INSTANCE, VOLUME

FIELD_NAMES = sorted({*APPS_CONFIG, *APP, *INSTANCE, *VOLUME, *BACKUP, "settings", "db_password"})
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=False),
    st.text(max_size=30),
    st.sampled_from(
        [
            "ghost",
            "static",
            "nextcloud",
            "nginx:1.2.3",
            "secret:x",
            "example.org",
            "10G",
            "0 3 * * *",
            "/data",
            "UTC",
            "ext4",
            "btrfs",
            "present",
            "absent",
        ]
    ),
)
keys = st.one_of(st.sampled_from(FIELD_NAMES), st.text(min_size=1, max_size=8))
documents = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=6)),
    max_leaves=30,
)


def _check(root: Path, text: str) -> None:
    path = root / "instances" / "fuzz" / "apps.config"
    path.write_text(text, encoding="utf-8")
    try:
        repo = load_repo(root)
    except ConfigError as exc:
        assert exc.problems and all(str(p) for p in exc.problems)
        return
    for instance in repo.instances:
        render_instance(instance, RenderOptions())


def _tree() -> Path:
    root = Path(tempfile.mkdtemp(prefix="swapyard-fuzz-"))
    (root / "instances" / "fuzz").mkdir(parents=True)
    return root


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.text(max_size=200))
def test_arbitrary_text_never_crashes(text: str) -> None:
    root = _tree()
    try:
        _check(root, text)
    finally:
        shutil.rmtree(root)


@FUZZ
@given(documents)
def test_arbitrary_yaml_structures_never_crash(doc: Any) -> None:
    root = _tree()
    try:
        _check(root, yaml.safe_dump(doc))
    finally:
        shutil.rmtree(root)


app_docs = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["a", "b", "blog"]),
        "domains": st.lists(
            st.sampled_from(["a.example.org", "b.example.org", "x_y"]), min_size=0, max_size=2
        ),
    },
    optional={
        "catalog": st.sampled_from(["ghost", "static", "vaultwarden", "nextcloud", "nope"]),
        "image": st.sampled_from(["nginx:1.27.3", "nginx", "x:latest"]),
        "port": st.integers(-1, 70000),
        "path": st.sampled_from(["/", "/api", "api"]),
        "settings": st.dictionaries(
            st.sampled_from(["db_password", "admin_password", "root"]),
            st.sampled_from(["secret:a", "plain", "site"]),
            max_size=3,
        ),
        "data": st.lists(st.sampled_from(["/data", "relative", "/var/lib/x"]), max_size=2),
        "writer": st.booleans(),
    },
)


@FUZZ
@given(
    st.fixed_dictionaries(
        {"apps": st.lists(app_docs, max_size=3)},
        optional={
            "volume": st.fixed_dictionaries(
                {},
                optional={
                    "size": st.sampled_from(["1G", "1X", "32M"]),
                    "filesystem": st.sampled_from(["xfs", "zfs"]),
                },
            )
        },
    )
)
def test_near_valid_configs_never_crash(doc: Any) -> None:
    root = _tree()
    try:
        _check(root, yaml.safe_dump(doc))
    finally:
        shutil.rmtree(root)
