"""The `lxd` provider: LXD (or Incus) instances, their data on custom storage volumes."""
