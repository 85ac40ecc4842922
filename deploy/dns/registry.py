"""DNS driver registry: `dns.provider` -> driver class, imported only when asked for.

Listed as (module, class) like the providers' registry, so importing
`deploy.dns` pulls in neither dnspython nor boto3.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Mapping
from typing import Any

from deploy.dns.base import DnsDriver, DnsError, ZoneAccess
from deploy.providers.types import DeployError

SECRET_PREFIX = "secret:"
# `dns:` settings whose ZoneAccess field has another name
RENAMED = {"token_secret": "token"}

DRIVERS: dict[str, tuple[str, str]] = {
    "rfc2136": ("deploy.dns.rfc2136", "Rfc2136Driver"),
    "route53": ("deploy.dns.route53", "Route53Driver"),
    "hetzner": ("deploy.dns.hetzner", "HetznerDriver"),
}


class UnknownDnsDriver(DeployError, LookupError):
    """No DNS driver is registered under the requested name."""


def open_zone(access: ZoneAccess) -> DnsDriver:
    """The driver for `access.provider`, bound to `access.zone`."""
    try:
        module_name, class_name = DRIVERS[access.provider]
    except KeyError:
        known = ", ".join(sorted(DRIVERS))
        raise UnknownDnsDriver(
            f"DNS provider {access.provider!r} has no driver (known: {known})"
        ) from None
    driver: type[DnsDriver] = getattr(importlib.import_module(module_name), class_name)
    return driver(access)


def zone_access(
    settings: Mapping[str, Any], secret: Callable[[str], str | None], timeout: float = 10.0
) -> ZoneAccess:
    """The `ZoneAccess` of an instance's `dns:` settings, each `secret:NAME` value read with
    `secret` (the service's store); settings a driver does not take (`ttl`) are dropped.

    A secret `secret` does not know is a `DnsError` naming the setting and the secret.
    """
    fields = {f.name for f in dataclasses.fields(ZoneAccess)}
    values: dict[str, Any] = {"timeout": timeout}
    for key, value in settings.items():
        if isinstance(value, str) and value.startswith(SECRET_PREFIX):
            name = value[len(SECRET_PREFIX) :]
            value = secret(name)
            if value is None:
                raise DnsError(
                    f"dns.{key}: secret {name!r} is not in the secret store; add it (a file "
                    f"named {name} in SECRETS_DIR) and push again"
                )
        field = RENAMED.get(key, key)
        if field in fields and value is not None:
            values[field] = value
    return ZoneAccess(**values)
