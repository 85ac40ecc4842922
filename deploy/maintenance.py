"""Leaving maintenance: writers started, the apps checked behind the page, then the page off.

Every path that stopped an instance's writers under the maintenance page
(a backup, a live restore and its undo, a swap's rollback, and the
`recover()` of each after a crash) gives the instance back through
`end_maintenance`:

    start_writers -> health_check (behind the page) -> maintenance_off

An app needs a moment to listen after its container starts; turning the
page off at once showed clients a 502 for that moment. Here the page stays
on until every app answers the check a deploy uses (`deploy.spec.check_apps`,
through the instance's front proxy with each app's Host header). The check
gets past the page with a health pass: a random token the provider admits
(`Provider.set_health_pass`) and the check sends in a header; everyone else
still gets the 503 with `Retry-After`, which clients retry, never a 502.

When the writers do not start or an app does not answer in time, the page
stays on: better a maintenance page than a half-working app. The failed
step is journaled by the caller's step runner, a `maintenance` alert is
raised (shown by `/metrics` and the instance's page) and
`MaintenanceKept` tells the caller, whose run or swap records why. The
next successful end of maintenance of that instance closes the alert.
"""

from __future__ import annotations

import logging
import secrets
from typing import Protocol

import requests

from deploy.providers.base import InstanceHandle, Provider
from deploy.providers.types import DeployError, ProviderError
from deploy.spec import AppCheck, check_apps
from deploy.steps.runner import StepRunner, describe
from renderers.layout import HEALTH_PASS_HEADER

log = logging.getLogger(__name__)

ALERT = "maintenance"  # the alert kind of an instance left behind its maintenance page


class Alerts(Protocol):
    """Where an instance left in maintenance is reported (`BackupJournal` implements it)."""

    def raise_alert(self, project: str, name: str, kind: str, message: str) -> None:
        """Open (or update) an alert."""
        ...

    def clear_alert(self, project: str, name: str, kind: str) -> None:
        """Close an alert; a no-op when none is open."""
        ...


class MaintenanceKept(DeployError):
    """The instance stays behind its maintenance page: writers or apps did not come back."""


def _ignores_pass(instance: InstanceHandle, app: AppCheck, token: str) -> bool:
    """True when the front proxy answers the pass with its maintenance page (503, Retry-After).

    A Caddyfile rendered before the health pass existed does that; an app
    starting behind a proxy that knows the pass answers 502 or its own page.
    """
    assert instance.endpoint is not None
    host, port = instance.endpoint
    try:
        resp = requests.get(
            f"http://{host}:{port}{app.path}",
            headers={HEALTH_PASS_HEADER: token, "Host": app.domain},
            timeout=5,
            allow_redirects=False,
        )
    except requests.RequestException:
        return False
    return resp.status_code == 503 and "Retry-After" in resp.headers


def check_behind_page(
    provider: Provider,
    instance: InstanceHandle,
    apps: tuple[AppCheck, ...],
    timeout: float,
    interval: float = 0.5,
) -> None:
    """Health-check every app through the front proxy while its maintenance page is on.

    A fresh health pass is admitted for the check and withdrawn after it,
    whatever the outcome. `HealthCheckFailed` when an app does not answer
    healthy within `timeout` seconds. An instance whose front proxy
    predates the pass (its page answers the pass too) is checked as before
    it existed, with the page off, and a warning says to redeploy it.
    """
    if instance.endpoint is None:
        raise ProviderError(f"instance {instance.id} has no endpoint to health-check")
    token = secrets.token_hex(16)
    provider.set_health_pass(instance, token)
    try:
        headers = {HEALTH_PASS_HEADER: token}
        if apps and _ignores_pass(instance, apps[0], token):
            log.warning(
                "%s: its front proxy ignores the health pass (rendered by an older swapyard); "
                "the page goes off before the check; redeploy it to keep the page on until "
                "the apps answer",
                instance.id,
            )
            provider.set_maintenance(instance, False)
            headers = {}
        check_apps(instance.endpoint, apps, timeout, interval, headers=headers)
    finally:
        provider.set_health_pass(instance, None)


def end_maintenance(
    provider: Provider,
    instance: InstanceHandle,
    apps: tuple[AppCheck, ...],
    step: StepRunner,
    *,
    alerts: Alerts | None,
    owner: tuple[str, str],
    timeout: float,
    interval: float = 0.5,
    prefix: str = "",
    suffix: str = "",
) -> None:
    """Start the writers, wait until every app answers behind the page, then turn it off.

    Each of the three is a journaled step of the caller (`step(name, fn)`),
    named `<prefix><step><suffix>` (a swap's rollback says
    `rollback:start_writers_old`). The first failure stops there with the
    page on: it raises the `maintenance` alert of `owner` (project, name;
    when `alerts` is given) and `MaintenanceKept` naming the step and why.
    """
    for name, fn in (
        ("start_writers", lambda: provider.start_writers(instance)),
        ("health_check", lambda: check_behind_page(provider, instance, apps, timeout, interval)),
        ("maintenance_off", lambda: provider.set_maintenance(instance, False)),
    ):
        label = f"{prefix}{name}{suffix}"
        try:
            step(label, fn)
        except Exception as exc:
            message = f"{label}: {describe(exc)}; the maintenance page stays on"
            log.error("%s/%s: %s", *owner, message)
            if alerts is not None:
                alerts.raise_alert(*owner, ALERT, message)
            raise MaintenanceKept(message) from exc
    if alerts is not None:
        alerts.clear_alert(*owner, ALERT)
