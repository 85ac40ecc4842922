"""GitLab's commit status API (REST v4): the one GitLab call swapyard makes.

PyGithub speaks GitHub's API (and Gitea's compatible status endpoint), not
GitLab's, and python-gitlab would be a large dependency for a single POST;
this is that POST over requests. `POST /projects/:id/statuses/:sha` takes the
numeric project id or the URL-encoded `namespace/project` path, which is what
a GitLab push stores as the event's repository (`project.path_with_namespace`).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import requests

from schemas.errors import SwapyardError

# Our states (`service.forge.statuses.CommitState`, which imports this module)
# -> GitLab's (pending, running, success, failed, canceled).
STATES = {"pending": "pending", "success": "success", "failure": "failed", "error": "failed"}

# What GitLab's status state machine says when an event does not apply to the
# current state, e.g. "Cannot transition status via :enqueue from :pending
# (Reason(s): Status cannot transition via "enqueue")".
_NO_TRANSITION = re.compile(r"Cannot transition status via :\w+ from :(\w+)")


class GitLabAnswer(SwapyardError):
    """GitLab answered a status post with an HTTP error."""

    def __init__(self, status: int, message: str):
        super().__init__(f"GitLab answered {status}: {message}")
        self.status, self.message = status, message


class GitLabStatuses:
    """Posts commit statuses to one GitLab instance with a `PRIVATE-TOKEN`."""

    def __init__(self, api_url: str, token: str, timeout: float):
        self.api_url = api_url.rstrip("/")
        self.timeout = timeout
        self._session = requests.Session()
        self._session.headers["PRIVATE-TOKEN"] = token

    def close(self) -> None:
        self._session.close()

    def post(
        self,
        project: str,
        sha: str,
        *,
        state: str,
        name: str,
        description: str,
        target_url: str | None,
    ) -> None:
        """Set the status `name` of commit `sha` in `project` (id or `namespace/project`).

        Raises GitLabAnswer for an HTTP error, OSError (requests' errors) when
        GitLab cannot be reached.
        """
        wanted = STATES[state]
        body = {"state": wanted, "name": name, "description": description}
        if target_url:
            body["target_url"] = target_url
        url = f"{self.api_url}/projects/{quote(project, safe='')}/statuses/{sha}"
        answer = self._session.post(url, json=body, timeout=self.timeout)
        if answer.ok:
            return
        message = _message(answer)
        # GitLab keeps one status per (commit, name) and moves it through a state
        # machine; posting the state it already has (a retry whose first answer was
        # lost, or the same outcome twice) is refused with a 400 "Cannot transition
        # status via :enqueue from :pending". The commit shows what we meant, so it
        # counts as sent; a refusal from any other state is still an error.
        found = _NO_TRANSITION.search(message)
        if answer.status_code == 400 and found and found.group(1) == wanted:
            return
        raise GitLabAnswer(answer.status_code, message)


def _message(answer: requests.Response) -> str:
    """GitLab's `message` (or `error`) of an error answer, else its text."""
    try:
        data: Any = answer.json()
    except ValueError:
        return answer.text
    if isinstance(data, dict):
        return str(data.get("message") or data.get("error") or data)
    return str(data)
