"""Secrets kept at rest encrypted (the SMTP password): Fernet (AES-128-CBC with HMAC-SHA256).

The key comes from `SOLARIS_SECRET_KEY`: a Fernet key (`Fernet.generate_key()`, 44 characters)
or any other text, hashed into one (then make it long and random). Several keys separated by
commas are a rotation: the first encrypts, any of them decrypts. Without it, a key is generated
once into `secret.key` in the data folder (mode 0600): enough for one host, but every gateway
sharing a database must use the same key, so set `SOLARIS_SECRET_KEY` when there are several.

A stored value reads `fernet:<token>`; a value without that prefix was saved in plain text by an
earlier release, and is encrypted the next time it is read or written (`SettingsStore`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import time
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

PREFIX = "fernet:"
KEY_FILE = "secret.key"


class SecretUnreadable(Exception):
    """A stored secret that none of the keys decrypts (the key changed, or another host's)."""


def _fernet(text: str) -> Fernet:
    try:
        if len(base64.urlsafe_b64decode(text.encode())) == 32:
            return Fernet(text.encode())
    except (ValueError, binascii.Error):
        pass
    return Fernet(base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()))


def _key_file(data_dir: Path) -> str:
    """The key in `data_dir/secret.key`, created (0600) the first time; racing processes read the
    one that won."""
    path = data_dir / KEY_FILE
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(50):  # the winner may not have written it yet
            text = path.read_text(encoding="ascii").strip()
            if text:
                return text
            time.sleep(0.02)
        raise RuntimeError(f"{path} is empty: remove it, or set SOLARIS_SECRET_KEY") from None
    key = Fernet.generate_key()
    with os.fdopen(fd, "wb") as file:
        file.write(key + b"\n")
    return key.decode()


def server_key(secret_key: str, data_dir: Path) -> bytes:
    """The key other secrets are derived from (webhook signing secrets): the first of
    `SOLARIS_SECRET_KEY`, else the key file's, so one key serves every secret of the gateway."""
    texts = [k.strip() for k in secret_key.split(",") if k.strip()]
    return (texts[0] if texts else _key_file(data_dir)).encode()


class SecretBox:
    def __init__(self, keys: str) -> None:
        texts = [k.strip() for k in keys.split(",") if k.strip()]
        if not texts:
            raise ValueError("no secret key")
        self._fernet = MultiFernet([_fernet(text) for text in texts])

    @classmethod
    def from_settings(cls, secret_key: str, data_dir: Path) -> SecretBox:
        return cls(secret_key or _key_file(data_dir))

    def seal(self, plain: str) -> str:
        """The value to store; "" stays "" (no secret)."""
        return PREFIX + self._fernet.encrypt(plain.encode()).decode() if plain else ""

    def open(self, stored: str) -> str:
        """The secret of a stored value; a plain value (an earlier release's) is returned as is."""
        if not stored.startswith(PREFIX):
            return stored
        try:
            return self._fernet.decrypt(stored.removeprefix(PREFIX).encode()).decode()
        except InvalidToken:
            raise SecretUnreadable("a stored secret was encrypted with another SOLARIS_SECRET_KEY") from None

    @staticmethod
    def is_sealed(stored: str) -> bool:
        return stored == "" or stored.startswith(PREFIX)
