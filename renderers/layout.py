"""Where things live on an instance, in one place.

The compose file refers to the instance's root and data mount through compose
variables with defaults, so the same bytes run on Flatcar (the defaults) and
on a developer's machine or the local provider (variables set).
"""

from __future__ import annotations

ROOT = "/opt/swapyard"  # everything the Ignition config writes for the project
DATA = "/mnt/data"  # where the data volume is mounted
DATA_MOUNT_UNIT = "mnt-data.mount"  # systemd's name for a mount on DATA
ROOT_VAR = "${SWAPYARD_ROOT:-/opt/swapyard}"
DATA_VAR = "${SWAPYARD_DATA:-/mnt/data}"

CADDY_SERVICE = "caddy"
CADDY_IMAGE = "caddy:2.8.4"
EDGE_NETWORK = "edge"
MAINTENANCE_DIR = "/etc/swapyard/maintenance"  # inside the Caddy container
MAINTENANCE_FLAG = "on"  # file whose presence turns maintenance on, no reload needed
MAINTENANCE_PAGE = "index.html"
# The health pass: a request carrying HEALTH_PASS_HEADER: <token> gets past the
# maintenance page while the file MAINTENANCE_DIR/HEALTH_PASS_PREFIX<token> exists
# (swapyard checks restarted apps before it turns the page off).
HEALTH_PASS_HEADER = "X-Swapyard-Health"
HEALTH_PASS_PREFIX = "health-"
HEALTH_PASS_TOKEN = "^[0-9a-f]{32}$"  # what a token looks like: 128 random bits in hex
RETRY_AFTER_SECONDS = 300
STATIC_DIR = "/srv/static"  # static sites, one directory per app, inside Caddy
CADDY_DATA_SUBPATH = ".caddy"  # Caddy's /data (certificates) on the data volume

COMPOSE = "compose.yaml"
CADDYFILE = "Caddyfile"
IGNITION = "ignition.json"
MAINTENANCE = f"maintenance/{MAINTENANCE_PAGE}"
# The instance's resource limits, for providers that set them (lxd); only rendered when
# the config sets one, so instances without limits keep their artifacts (and digests).
LIMITS = "limits.json"


def app_network(app: str) -> str:
    """The private network of one app: its services talk to each other there."""
    return f"app-{app}"


def secrets_env(service: str) -> str:
    """The artifact (and path under ROOT) of a service's secret environment file."""
    return f"secrets/{service}.env"


def shipped(source: str) -> str:
    """The artifact (and path under ROOT) of a shipped file from `files/`."""
    return f"files/{source.strip('/')}"


def unit(name: str) -> str:
    """The artifact name of a systemd unit."""
    return f"units/{name}"


def static_root(app: str) -> str:
    """Where Caddy sees a static app's files."""
    return f"{STATIC_DIR}/{app}"
