"""Settings from the environment (``HUB_*``), with safe embedded defaults: SQLite, in-process broker."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_home() -> Path:
    return Path.cwd() / ".hub"


def ensure_home(home: Path) -> Path:
    """Create HUB_HOME owner-only (0700): it holds the key and the embedded database. An existing directory is
    left as the operator made it."""
    if not home.is_dir():
        home.mkdir(parents=True, exist_ok=True)
        home.chmod(0o700)
    return home


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HUB_", extra="ignore")

    home: Path = Field(default_factory=default_home, description="where the embedded database and key live")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default: SQLite in HUB_HOME")
    redis_url: str | None = Field(default=None, description="Redis URL; when set, workers share a Redis broker")
    secret_key: str | None = Field(default=None, description="Fernet key(s), comma-separated, newest first")
    worker_threads: int = 4
    operation_lease_seconds: float = 60.0
    max_attempts: int = 8
    max_backoff_seconds: float = 3600.0
    relay_interval_seconds: float = 0.5
    scheduler_interval_seconds: float = 5.0
    log_retention_days: int = Field(default=30, description="days the API log and received webhooks are kept "
                                                            "(`hub run` prunes older rows hourly); 0 keeps them")

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{ensure_home(self.home) / 'hub.db'}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
