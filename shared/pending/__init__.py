"""Pending points through the return window (issue 19 A): shared/pending/window.py
decides when an earn matures, shared/pending/maturation.py matures due earns."""
