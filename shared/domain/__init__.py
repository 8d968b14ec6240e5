"""The domain model: plain Python, no I/O, no SDKs."""
