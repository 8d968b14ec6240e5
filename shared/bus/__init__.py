"""The order bus port and its adapters (durable local queue, Event Hubs)."""
