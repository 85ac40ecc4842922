"""Errors of the receiving and processing side; the HTTP layer maps them to status codes."""

from __future__ import annotations

from schemas.errors import SwapyardError


class WebhookError(SwapyardError):
    """A delivery that cannot be accepted; `status` is the HTTP answer."""

    status = 400


class SignatureError(WebhookError):
    status = 401


class PayloadError(WebhookError, ValueError):
    status = 400


class GitError(SwapyardError):
    """A git operation on the mirror failed; the message names the repository and commit."""
