"""The Redis connection: a configured URL, or the embedded Valkey server."""
