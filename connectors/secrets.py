"""Credentials read from files: the Docker / Kubernetes secrets convention (``*_FILE``).

A secret setting ``x`` can be given directly (``TRADEFLOW_..._X``, a ``SecretStr``) or as
the path of a file holding it (``TRADEFLOW_..._X_FILE``, a mounted secret). Giving both
with different values is an error, so a stale variable cannot silently shadow a
mounted secret. The file is read once, its trailing newline stripped, and the value
only ever kept as a ``SecretStr``; errors name the file, never its content. The path
stays in the settings, so a process can hand the file (not the secret) to its children.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr


class SecretFileError(ValueError):
    """A ``*_FILE`` secret could not be read (the message names the file, not the secret)."""


def read_secret_file(path: Path) -> SecretStr:
    """Return the content of a secret file (without its trailing newline) as a ``SecretStr``."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SecretFileError(f"cannot read secret file {path}: {exc.strerror}") from None
    value = text.rstrip("\r\n")
    if not value:
        raise SecretFileError(f"secret file {path} is empty")
    return SecretStr(value)


def resolve_secret(
    name: str, value: SecretStr | None, file: Path | None
) -> SecretStr | None:
    """Return the secret ``name`` given directly or through its ``*_file``."""
    if file is None:
        return value
    from_file = read_secret_file(file)
    if value is not None and value.get_secret_value() != from_file.get_secret_value():
        raise SecretFileError(f"{name} and {name}_file are both set, to different values; give one")
    return from_file
