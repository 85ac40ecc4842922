"""The edge: one Caddy on the control host in front of every instance, and its switchboard.

A toolkit for drivers whose instances answer HTTP at an address the control
host can reach (the `local` compose projects, `lxd` containers): drivers
import it, it imports only the provider contract.
"""
