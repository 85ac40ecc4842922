"""The quick start: the whole flow on one machine, from a git push to apps on localhost.

`scripts/quickstart` runs `scripts/setup`, then this module, which:

1. builds local images when no registry is reachable (`--offline`, the
   default when a `docker pull` fails) and maps every upstream image to them;
2. writes a service config under the quick start directory (SQLite, the
   local provider, the edge on 127.0.0.1:8000, https off, a generated
   webhook secret and API token, a secret store holding a generated value
   for every `secret:NAME` the example repository uses);
3. (re)starts `swapyard serve` in the background (pid and log files);
4. creates a bare repository (the "forge") with a post-receive hook that
   signs and delivers each push (service.quickstart.githook) and a clone seeded from
   examples/config-repo, and pushes it; waits for the deployments and
   prints which URLs answer through the edge;
5. commits a change to the static site and pushes again: a swap.

`--provider lxd` runs the same flow on LXD (the `lxd` provider): each
instance a system container on this machine's daemon, booted from
swapyard's base image (built first when the daemon lacks it), its local
images copied in, its data on an LXD custom volume, the same edge in front.
`scripts/quickstart` starts the daemon first (`scripts/setup --lxd`). The
provider is the quick start directory's: another one there is refused until
`--stop`, which reads the provider from the config it wrote.

`--stop` stops the service, destroys the quick start's instances (their
volumes stay: in the state directory, or in LXD's pool) and stops the edge.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import requests

from schemas.errors import SwapyardError
from service.quickstart.steps import (
    PROVIDERS,
    ROOT,
    Layout,
    QuickstartError,
    app_urls,
    backup_now,
    configured_provider,
    fill_secrets,
    lxd_settings,
    probe,
    push,
    registry_reachable,
    run,
    secret_names,
    seed_repository,
    start_service,
    stop_service,
    wait_for_push,
    write_config,
)


def _show(edge: str, clone: Path) -> int:
    answering = 0
    for app, domain, path in app_urls(clone):
        status, title = probe(edge, domain, path)
        answering += status == 200
        print(f"  {status!s:>4}  http://{domain}{path}  ({app}: {title})")
    return answering


def change_site(clone: Path) -> str:
    """Commit a visible change to the static site of `www`; returns the new line."""
    page = clone / "instances" / "www" / "files" / "site" / "index.html"
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
    line = f"<p>Changed by the quick start at {stamp} UTC.</p>"
    text = re.sub(r"\n?<p>Changed by the quick start at .*?</p>", "", page.read_text())
    page.write_text(text.rstrip("\n") + "\n" + line + "\n")
    run(["git", "commit", "-qam", "Quick start: change the site, to show a swap"], cwd=clone)
    return line


def _provider(lay: Layout) -> Any:
    """The provider of the quick start's service config, opened as the service opens it."""
    from service.settings import load_settings
    from service.worker.deployer import open_provider

    return open_provider(load_settings({"config_file": str(lay.config)}, environ={}))


def _show_instances(lay: Layout) -> None:
    """Where each instance answers on its own (the edge proxies each domain to one of them)."""
    for instance in sorted(_provider(lay).list_instances(), key=lambda i: i.id):
        host, port = instance.endpoint or ("?", "?")
        print(f"  {instance.project}/{instance.name}: {instance.id} at http://{host}:{port}/")


def teardown(lay: Layout) -> None:
    """Stop the service, destroy the quick start's instances, stop the edge."""
    from deploy.providers.edge.traffic import EdgeTraffic

    stop_service(lay)
    if not lay.config.exists():
        return
    provider = _provider(lay)
    for instance in provider.list_instances():
        provider.destroy_instance(instance)
        print(f"destroyed {instance.id}")
    if isinstance(provider, EdgeTraffic):  # the quick start's providers have the edge
        provider.ex_stop_edge()


def main(argv: list[str] | None = None) -> int:
    """Run the quick start (see the module docstring)."""
    p = argparse.ArgumentParser(prog="scripts/quickstart", description=__doc__.split("\n")[0])
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--offline",
        dest="offline",
        action="store_true",
        default=None,
        help="build local images (default when `docker pull` fails)",
    )
    mode.add_argument(
        "--online", dest="offline", action="store_false", help="use the upstream images"
    )
    p.add_argument("--stop", action="store_true", help="stop and remove what it started")
    p.add_argument(
        "--provider",
        choices=PROVIDERS,
        default=os.environ.get("QUICKSTART_PROVIDER", "local"),
        help="where the instances run: local (compose projects, default) or lxd",
    )
    p.add_argument(
        "--dir",
        help="where everything lives (default ./.quickstart)",
        default=os.environ.get("QUICKSTART_DIR", str(ROOT / ".quickstart")),
    )
    p.add_argument("--port", type=int, default=int(os.environ.get("QUICKSTART_PORT", "8090")))
    p.add_argument("--edge", default=os.environ.get("QUICKSTART_EDGE", "127.0.0.1:8000"))
    p.add_argument(
        "--edge-admin", default=os.environ.get("QUICKSTART_EDGE_ADMIN", "127.0.0.1:2119")
    )
    args = p.parse_args(argv)
    lay = Layout(Path(args.dir).resolve())
    started = time.monotonic()
    try:
        if args.stop:
            teardown(lay)
            print("quickstart: stopped")
            return 0
        before = configured_provider(lay)
        if before not in (None, args.provider):
            raise QuickstartError(
                f"{lay.base} runs the {before} provider's instances; `scripts/quickstart "
                f"--stop` first (or --dir elsewhere) to start over with --provider {args.provider}"
            )
        lay.base.mkdir(parents=True, exist_ok=True)
        if stop_service(lay):
            print("quickstart: stopped the running service")
        offline = args.offline
        if offline is None:
            offline = not registry_reachable()
            print(f"quickstart: registry {'unreachable: --offline' if offline else 'reachable'}")
        url = f"http://127.0.0.1:{args.port}"
        created = seed_repository(lay, url)
        print(f"quickstart: config repository {lay.clone} (forge: {lay.bare})")
        added = fill_secrets(lay.secrets, secret_names(lay.clone))
        print(f"quickstart: secret store {lay.secrets} ({added} generated)")
        image_map: dict[str, str] = {}
        if offline:
            from deploy.providers.local.images import image_map_for_repository

            image_map = image_map_for_repository(lay.clone)
            print(f"quickstart: {len(image_map)} upstream image(s) mapped to local images")
        extra = lxd_settings() if args.provider == "lxd" else {}
        write_config(lay, args.port, args.edge, args.edge_admin, image_map, args.provider, extra)
        pid = start_service(lay, args.port)
        print(f"quickstart: swapyard serve on {url} (pid {pid}, log {lay.log})")
        token = (lay.base / "api-token").read_text().strip()
        sha, out = push(lay.clone)
        print(f"quickstart: pushed {sha[:12]}" + ("" if created else " (already there)"))
        print("".join(f"  {line}\n" for line in out.splitlines() if "swapyard" in line), end="")
        if "delivered" in out:
            for d in wait_for_push(url, token, sha):
                print(f"  {d['instance']}: {d['status']} {d['action'] or ''} {d['summary'] or ''}")
        if args.provider != "local":
            print(f"quickstart: the instances on {args.provider}:")
            _show_instances(lay)
        print(f"quickstart: through the edge {args.edge}:")
        _show(args.edge, lay.clone)
        line = change_site(lay.clone)
        sha, out = push(lay.clone)
        print(f"quickstart: second push {sha[:12]} changes the site: {line}")
        for d in wait_for_push(url, token, sha):
            print(f"  {d['instance']}: {d['status']} {d['action'] or ''} {d['summary'] or ''}")
        page = requests.get(f"http://{args.edge}/", headers={"Host": "example.org"}, timeout=5)
        shown = "shows" if line in page.text else "does NOT show"
        print(f"quickstart: example.org {shown} the change after the swap")
        ok = _show(args.edge, lay.clone)
        if args.provider != "local":
            print(f"quickstart: the instances on {args.provider} after the swap:")
            _show_instances(lay)
        total = len(app_urls(lay.clone))
        print("quickstart: a backup of production/www now (maintenance page while it runs):")
        print(f"  {backup_now(lay, 'production/www')}")
        print(
            f"\nquickstart: done in {time.monotonic() - started:.0f} s: {ok}/{total} URLs answer "
            f"through http://{args.edge}/ (curl -H 'Host: example.org' http://{args.edge}/).\n"
            f"  service {url} (API token in {lay.base}/api-token), history: "
            f"swapyard history --config {lay.config}\n"
            f"  backups: swapyard backup list production/www --config {lay.config}\n"
            f"  change {lay.clone} and `git push` to deploy; stop: scripts/quickstart --stop"
        )
        return 0 if ok == total else 1
    except (SwapyardError, requests.RequestException, OSError) as exc:
        print(f"quickstart: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
