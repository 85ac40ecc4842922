"""Reaching inside a remote instance without a login, shared by the drivers whose instances run
their own Docker engine (`lxd`, and the cloud drivers): `pki` is swapyard's own certificate
authority, `engine` the instance's Docker Engine API over mutual TLS."""
