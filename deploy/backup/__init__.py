"""Backups: restic snapshots of each instance's data volume, their schedule, checks,
restores and drills, journaled in their own tables."""
