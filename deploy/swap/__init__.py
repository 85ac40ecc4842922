"""The swap engine: replace a live instance by a new one and move its data volume across,
journaled so a restarted worker resumes or rolls back."""
