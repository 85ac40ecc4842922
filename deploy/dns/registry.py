"""DNS driver registry: `dns.provider` -> driver class, imported only when asked for.

Listed as (module, class) like the providers' registry, so importing
`deploy.dns` pulls in neither dnspython nor boto3.
"""

from __future__ import annotations

import importlib

from deploy.dns.base import DnsDriver, ZoneAccess
from deploy.providers.types import DeployError

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
