"""Credentials at rest: Fernet (AES-128-CBC + HMAC-SHA256) from the cryptography package.

The key comes from ``HUB_SECRET_KEY`` (several comma-separated keys allow rotation: the first encrypts, all
decrypt; ``hub secrets rotate`` re-encrypts everything with the first so the others can be retired). Without one,
a key is generated once into ``HUB_HOME/secret.key`` with mode 0600, so the embedded default works with no setup
and still never stores a secret in clear.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from hub.errors import ConfigError, Fatal
from hub.settings import Settings, ensure_home

KEY_FIX = ("Run `hub secrets generate` for a new key (or: python -c \"from cryptography.fernet import Fernet; "
           "print(Fernet.generate_key().decode())\"); put it first in HUB_SECRET_KEY, old keys after it, "
           "comma-separated.")


def generate_key() -> str:
    return Fernet.generate_key().decode()


def _key_file(settings: Settings) -> Path:
    path = settings.home / "secret.key"
    if not path.exists():
        ensure_home(settings.home)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(Fernet.generate_key())
    return path


def _fernets(raw: str, source: str) -> MultiFernet:
    """Parse comma-separated keys; a malformed one is named by its position, never echoed."""
    keys = [k.strip() for k in raw.split(",") if k.strip()]
    if not keys:
        raise ConfigError(f"{source} holds no key", fix=KEY_FIX)
    fernets = []
    for position, key in enumerate(keys, 1):
        try:
            fernets.append(Fernet(key.encode()))
        except ValueError:
            raise ConfigError(f"{source}: key {position} of {len(keys)} is not a Fernet key (32 url-safe "
                              "base64-encoded bytes)", fix=KEY_FIX) from None
    return MultiFernet(fernets)


class Vault:
    def __init__(self, settings: Settings) -> None:
        if settings.secret_key is not None:
            self._fernet = _fernets(settings.secret_key, "HUB_SECRET_KEY")
        else:
            path = _key_file(settings)
            self._fernet = _fernets(path.read_text(), f"the key file {path}")

    def encrypt(self, values: dict[str, Any]) -> bytes:
        return self._fernet.encrypt(json.dumps(values).encode())

    def decrypt(self, token: bytes) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(self._fernet.decrypt(token))
        except InvalidToken:
            raise Fatal(
                "stored credentials cannot be decrypted with the configured HUB_SECRET_KEY",
                fix="Set HUB_SECRET_KEY to the key the credentials were stored with (old keys may follow, "
                "comma-separated), or re-authorize the connection.",
            ) from None
        return data

    def rotate(self, token: bytes) -> bytes:
        """Re-encrypt ``token`` with the newest key (it must decrypt with one of the configured keys)."""
        try:
            return self._fernet.rotate(token)
        except InvalidToken:
            raise Fatal("a stored secret cannot be decrypted with any key in HUB_SECRET_KEY",
                        fix="Keep the key it was stored with in HUB_SECRET_KEY (after the new one) while rotating."
                        ) from None
