"""Talking back to the forges: commit statuses through an outbox, one client per forge API."""
