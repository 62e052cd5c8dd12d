"""The job runner: a Dramatiq broker, the core's generic actors, the outbox relay and the scheduler."""
