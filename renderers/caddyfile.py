"""Caddyfile: the instance's front proxy, and its maintenance page.

One site block per domain. When several apps share a domain, each gets a
`handle` for its path, most specific path first, and the app on `/` catches
the rest. Every site starts with the maintenance check: while the flag file
`/etc/swapyard/maintenance/on` exists, every request gets `503`, a
`Retry-After` header and the maintenance page. Caddy's `file` matcher looks
at the file system on each request, so turning maintenance on or off is
creating or removing that file, with no reload.

One exception, the health pass: a request whose `X-Swapyard-Health` header
holds a token for which `health-<token>` exists beside the flag goes to the
apps. swapyard writes such a file for the health check of apps it restarted
behind the page, so the page goes off only once they answer; the token is
random per check and the header must look like one (no path tricks in the
file name).

The handlers sit inside a `route` so they run in the order written (Caddy
would otherwise sort them by its own rules); each ends in a terminal handler
(`reverse_proxy`, `file_server`), so the first match answers. The output is
for Caddy 2.6 and later (Debian's caddy validates it in the tests).
"""

from __future__ import annotations

import html
from collections.abc import Iterator

from renderers import layout
from renderers.artifacts import RenderOptions
from schemas.model import App, Instance

TAB = "\t"


def https_enabled(instance: Instance, options: RenderOptions) -> bool:
    """Whether Caddy manages certificates: `options.https` wins over the instance's setting."""
    return instance.https if options.https is None else options.https


def render_caddyfile(instance: Instance, options: RenderOptions) -> bytes:
    """The Caddyfile: global options, the maintenance snippet, one site per domain."""
    https = https_enabled(instance, options)
    lines = ["# Rendered by swapyard for " + instance.key + "; do not edit.", "{"]
    lines.append(f"{TAB}admin off")
    if not https:
        lines.append(f"{TAB}auto_https off")
    if instance.acme_email:
        lines.append(f"{TAB}email {instance.acme_email}")
    lines += ["}", ""]
    lines += _maintenance_snippet()
    for domain in sorted(set(instance.domains)):
        apps = [app for app in instance.apps if domain in app.domains]
        lines.append("")
        lines += _site(domain if https else f"http://{domain}", apps)
    return ("\n".join(lines) + "\n").encode()


def _maintenance_snippet() -> list[str]:
    page, header = layout.MAINTENANCE_DIR, layout.HEALTH_PASS_HEADER
    token = f"{{http.request.header.{header}}}"  # the header's value, a Caddy placeholder
    return [
        "(maintenance) {",
        f"{TAB}@maintenance {{",
        f"{TAB}{TAB}file {{",
        f"{TAB}{TAB}{TAB}root {page}",
        f"{TAB}{TAB}{TAB}try_files /{layout.MAINTENANCE_FLAG}",
        f"{TAB}{TAB}}}",
        f"{TAB}{TAB}not {{",
        f"{TAB}{TAB}{TAB}header_regexp {header} {layout.HEALTH_PASS_TOKEN}",
        f"{TAB}{TAB}{TAB}file {{",
        f"{TAB}{TAB}{TAB}{TAB}root {page}",
        f"{TAB}{TAB}{TAB}{TAB}try_files /{layout.HEALTH_PASS_PREFIX}{token}",
        f"{TAB}{TAB}{TAB}}}",
        f"{TAB}{TAB}}}",
        f"{TAB}}}",
        f"{TAB}handle @maintenance {{",
        f"{TAB}{TAB}header Retry-After {layout.RETRY_AFTER_SECONDS}",
        f'{TAB}{TAB}header Cache-Control "no-store"',
        f"{TAB}{TAB}root * {page}",
        f"{TAB}{TAB}rewrite * /{layout.MAINTENANCE_PAGE}",
        f"{TAB}{TAB}file_server {{",
        f"{TAB}{TAB}{TAB}status 503",
        f"{TAB}{TAB}}}",
        f"{TAB}}}",
        "}",
    ]


def _specificity(app: App) -> tuple[int, str]:
    path = app.path.rstrip("/")
    return (-len(path), path)


def _site(address: str, apps: list[App]) -> list[str]:
    lines = [
        f"{address} {{",
        f"{TAB}log {{",
        f"{TAB}{TAB}output stdout",
        f"{TAB}{TAB}format json",
        f"{TAB}}}",
        f"{TAB}route {{",
        f"{TAB}{TAB}import maintenance",
    ]
    for app in sorted(apps, key=_specificity):
        lines += [TAB + TAB + line for line in _handle(app)]
    if all(app.path.rstrip("/") for app in apps):
        lines += [
            f"{TAB}{TAB}handle {{",
            f'{TAB}{TAB}{TAB}respond "Not found" 404',
            f"{TAB}{TAB}}}",
        ]
    lines += [f"{TAB}}}", "}"]
    return lines


def _handle(app: App) -> Iterator[str]:
    path = app.path.rstrip("/")
    if path:
        yield f"@{app.name} path {path} {path}/*"
        yield f"handle @{app.name} {{"
    else:
        yield "handle {"
    if app.static_root is not None:
        yield f"{TAB}root * {layout.static_root(app.name)}"
        yield f"{TAB}file_server"
    else:
        yield f"{TAB}reverse_proxy {app.upstream}:{app.port}"
    yield "}"


def maintenance_page(instance: Instance) -> bytes:
    """The page Caddy shows during maintenance: static HTML, no external resources."""
    title = "Down for maintenance"
    body = (
        "<!doctype html>\n"
        '<html lang="en">\n'
        "<head>\n"
        '<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="robots" content="noindex">\n'
        f"<title>{title}</title>\n"
        "<style>body{font-family:system-ui,sans-serif;max-width:36rem;margin:15vh auto;"
        "padding:0 1rem;color:#222;line-height:1.5}</style>\n"
        "</head>\n"
        "<body>\n"
        f"<h1>{title}</h1>\n"
        "<p>This site is being backed up or moved to a new server. "
        "It will be back in a few minutes; please try again shortly.</p>\n"
        f"<p><small>{html.escape(instance.key)}</small></p>\n"
        "</body>\n"
        "</html>\n"
    )
    return body.encode()
