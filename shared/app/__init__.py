"""Application services: the use cases, written against ports only."""
