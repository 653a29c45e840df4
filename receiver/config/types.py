"""What the settings and the sinks' settings share (one definition each): the base model,
the field types and the check for repeated names."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, ValidationInfo

from receiver.config.values import check_url


class Model(BaseModel):
    """Every settings section: unknown keys refused, frozen, defaults validated too."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


Secret = SecretStr  # a secret: inline, from a *_file or a *_env (receiver.config.loader)


def _relative(value: Path, info: ValidationInfo) -> Path:
    """A relative path given in a file is relative to that file's folder."""
    base = (info.context or {}).get("base")
    value = value.expanduser()
    return value if value.is_absolute() or base is None else Path(base) / value


def _http_url(value: str) -> str:
    return check_url(value, ("https", "http"))


def as_guid(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise ValueError("must be a GUID like 00000000-0000-0000-0000-000000000000") from None


FilePath = Annotated[Path, AfterValidator(_relative)]
HttpUrl = Annotated[str, AfterValidator(_http_url)]
Guid = Annotated[str, AfterValidator(as_guid)]
Name = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_\-]{0,62}$")]


def repeated(values: Iterable[str]) -> list[str]:
    """The values that occur more than once (ids, names that must be unique), sorted."""
    seen: set[str] = set()
    again: set[str] = set()
    for value in values:
        (again if value in seen else seen).add(value)
    return sorted(again)
