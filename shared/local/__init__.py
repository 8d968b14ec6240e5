"""The local platform: the same handlers as the Azure Functions, driven by
threads over the embedded default (SQLite store, durable local queue)."""
