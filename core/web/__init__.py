"""Billy's page: its own Flask process, and the local channel between it and the voice process."""
