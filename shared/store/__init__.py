"""The document-store port and its adapters (SQLite embedded default, Cosmos DB)."""
