"""Moving records: pulling pages into the store, and running the outbox's operations."""
