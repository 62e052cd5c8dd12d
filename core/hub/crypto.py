"""Credentials at rest: Fernet (AES-128-CBC + HMAC-SHA256) from the cryptography package.

The key comes from ``HUB_SECRET_KEY`` (several comma-separated keys allow rotation: the first encrypts, all
decrypt). Without one, a key is generated once into ``HUB_HOME/secret.key`` with mode 0600, so the embedded
default works with no setup and still never stores a secret in clear.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from hub.errors import Fatal
from hub.settings import Settings


def _key_file(settings: Settings) -> Path:
    path = settings.home / "secret.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(Fernet.generate_key())
    return path


class Vault:
    def __init__(self, settings: Settings) -> None:
        raw = settings.secret_key or _key_file(settings).read_text().strip()
        self._fernet = MultiFernet([Fernet(k.strip().encode()) for k in raw.split(",") if k.strip()])

    def encrypt(self, values: dict[str, str]) -> bytes:
        return self._fernet.encrypt(json.dumps(values).encode())

    def decrypt(self, token: bytes) -> dict[str, str]:
        try:
            data: dict[str, str] = json.loads(self._fernet.decrypt(token))
        except InvalidToken:
            raise Fatal(
                "stored credentials cannot be decrypted with the configured HUB_SECRET_KEY",
                fix="Set HUB_SECRET_KEY to the key the credentials were stored with (old keys may follow, "
                "comma-separated), or re-authorize the connection.",
            ) from None
        return data
