"""Declarative route config: YAML validated by pydantic, applied to the store."""
