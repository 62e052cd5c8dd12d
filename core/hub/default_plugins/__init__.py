"""Built-in behaviour, registered like any plugin."""
