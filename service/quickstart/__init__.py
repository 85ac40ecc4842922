"""The quick start: the whole flow on one machine, from a git push to apps on localhost."""
