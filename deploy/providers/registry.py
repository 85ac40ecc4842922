"""Provider registry: name -> driver class, imported only when asked for.

Built-in drivers are listed as (module, class) so importing `deploy` does not
import Docker or cloud SDKs; `set_driver` registers outside drivers the same
way the built-ins are registered.
"""

from __future__ import annotations

import importlib

from deploy.providers.base import Provider
from deploy.providers.types import UnknownProvider

DRIVERS: dict[str, tuple[str, str]] = {
    "local": ("deploy.providers.local.provider", "LocalProvider"),
    "lxd": ("deploy.providers.lxd.provider", "LxdProvider"),
    "memory": ("deploy.providers.memory.provider", "MemoryProvider"),
}


def get_driver(name: str, drivers: dict[str, tuple[str, str]] | None = None) -> type[Provider]:
    """Return the driver class registered as `name`, importing its module now."""
    table = DRIVERS if drivers is None else drivers
    try:
        module_name, class_name = table[name]
    except KeyError:
        known = ", ".join(sorted(table)) or "none"
        raise UnknownProvider(
            f"provider {name!r} is not registered (known: {known}); "
            "register it with deploy.providers.registry.set_driver"
        ) from None
    module = importlib.import_module(module_name)
    driver = getattr(module, class_name)
    if not (isinstance(driver, type) and issubclass(driver, Provider)):
        raise UnknownProvider(f"{module_name}.{class_name} is not a deploy.providers.base.Provider")
    return driver


def set_driver(name: str, module: str, class_name: str) -> None:
    """Register (or replace) the driver `module.class_name` under `name`."""
    DRIVERS[name] = (module, class_name)
