"""Loading the settings: the YAML file, environment overrides, secrets, then validation.

Sources, later ones winning:

1. the YAML file (``--config`` or ``RECEIVER_CONFIG``);
2. environment overrides: ``RECEIVER_<KEY>__<KEY>...`` sets any key by its path, list items by
   index (``RECEIVER_WEB__PORT=9000``, ``RECEIVER_TENANTS__0__CLIENT_ID=...``); values are read
   as YAML scalars. ``REDIS_URL`` sets ``redis.url``.

Secrets (marked ``Secret`` in receiver.config.settings) can be given inline (``client_secret``),
from a file (``client_secret_file``, for Kubernetes and Docker secrets; relative paths are
relative to the config file) or from a named environment variable (``client_secret_env``).
Exactly one of them.

Every problem is reported with its file and line (or environment variable), key path and reason,
all at once, before anything starts. No secret value is ever part of a message.
"""

from __future__ import annotations

import copy
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Union

import yaml
from pydantic import BaseModel, SecretStr

from receiver import clock
from receiver.config.files import ConfigError, ConfigIssue, Document, Path_, read_yaml, validate
from receiver.config.settings import Settings

ENV_PREFIX = "RECEIVER_"
SECRET_SOURCES = ("_file", "_env")


def _is_secret(annotation: Any) -> bool:
    if annotation is SecretStr:
        return True
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is Union:
        return SecretStr in typing.get_args(annotation)
    return False


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The BaseModel classes an annotation can hold (through Optional, list, unions)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    out: list[type[BaseModel]] = []
    for arg in typing.get_args(annotation):
        out.extend(_models_in(arg))
    return out


def _pick_model(
    candidates: list[type[BaseModel]], data: Mapping[str, Any]
) -> type[BaseModel] | None:
    if len(candidates) == 1:
        return candidates[0]
    for model in candidates:  # discriminated union on 'type'
        field = model.model_fields.get("type")
        if field is not None and typing.get_args(field.annotation) == (data.get("type"),):
            return model
    return None


def _resolve_secrets(  # noqa: C901 - 15, older than the limit
    model: type[BaseModel],
    data: Any,
    path: Path_,
    doc: Document,
    environ: Mapping[str, str],
    issues: list[ConfigIssue],
) -> None:
    """Replace ``x_file`` / ``x_env`` by ``x`` for every secret field, in place."""
    if not isinstance(data, dict):
        return
    for name, field in model.model_fields.items():
        if _is_secret(field.annotation):
            given = [k for k in (name, *(name + s for s in SECRET_SOURCES)) if k in data]
            if len(given) > 1:
                issues.append(
                    doc.issue(
                        (*path, given[1]), f"secret given twice ({' and '.join(given)}): keep one"
                    )
                )
                for k in given:
                    data.pop(k, None)
                continue
            if not given or given[0] == name:
                continue
            key = given[0]
            ref = data.pop(key)
            if not isinstance(ref, str) or not ref:
                issues.append(doc.issue((*path, key), "must be a non-empty string"))
            elif key.endswith("_file"):
                file = Path(ref) if Path(ref).is_absolute() else doc.directory / ref
                try:
                    data[name] = file.read_text(encoding="utf-8").rstrip("\r\n")
                except (OSError, UnicodeDecodeError) as exc:
                    reason = getattr(exc, "strerror", None) or "not UTF-8 text"
                    issues.append(doc.issue((*path, key), f"cannot read secret file: {reason}"))
            elif ref in environ:
                data[name] = environ[ref]
            else:
                issues.append(doc.issue((*path, key), f"environment variable {ref} is not set"))
            continue
        value = data.get(name)
        models = _models_in(field.annotation)
        if not models or value is None:
            continue
        items = enumerate(value) if isinstance(value, list) else [(None, value)]
        for index, item in items:
            if not isinstance(item, dict):
                continue
            sub = _pick_model(models, item)
            if sub is not None:
                sub_path = (*path, name) if index is None else (*path, name, index)
                _resolve_secrets(sub, item, sub_path, doc, environ, issues)


def _apply_env(doc: Document, environ: Mapping[str, str], issues: list[ConfigIssue]) -> None:  # noqa: C901 - 14, older than the limit
    overrides: list[tuple[str, list[str], str]] = []
    if "REDIS_URL" in environ:
        overrides.append(("REDIS_URL", ["redis", "url"], environ["REDIS_URL"]))
    for var, raw in sorted(environ.items()):
        if not var.startswith(ENV_PREFIX) or var in ("RECEIVER_CONFIG", clock.OFFSET_ENV):
            continue
        parts = var[len(ENV_PREFIX) :].lower().split("__")
        if not all(parts):
            issues.append(ConfigIssue(f"environment {var}", "", "malformed name"))
            continue
        overrides.append((var, parts, raw))
    for var, parts, raw in overrides:
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        if isinstance(value, dict | list) or value is None:
            value = raw
        node: Any = doc.data
        path: list[str | int] = []
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            key: str | int = int(part) if part.isdigit() else part
            if isinstance(node, list) and isinstance(key, int):
                if key >= len(node):
                    issues.append(
                        ConfigIssue(f"environment {var}", "", f"list index {key} out of range")
                    )
                    break
            elif isinstance(node, dict) and isinstance(key, str):
                if not last and key not in node:
                    node[key] = {}
                    doc.env_sources[(*path, key)] = var
            else:
                issues.append(
                    ConfigIssue(f"environment {var}", "", "does not name a key of the settings")
                )
                break
            path.append(key)
            if last:
                node[key] = value
                doc.env_sources[tuple(path)] = var
            else:
                node = node[key]


def _finish(doc: Document, environ: Mapping[str, str]) -> Settings:
    issues: list[ConfigIssue] = []
    _apply_env(doc, environ, issues)
    _resolve_secrets(Settings, doc.data, (), doc, environ, issues)
    try:
        settings = validate(Settings, doc, {"base": str(doc.directory)})
    except ConfigError as exc:
        issues.extend(exc.issues)
        settings = None
    if issues or settings is None:
        raise ConfigError(issues)
    assert isinstance(settings, Settings)
    settings._source = doc.source
    return settings


def load_settings(path: str | Path, environ: Mapping[str, str] | None = None) -> Settings:
    """Load, override from the environment, resolve secrets, validate. Raises ConfigError."""
    doc = read_yaml(path)
    return _finish(doc, environ if environ is not None else {})


def settings_from_mapping(
    data: Mapping[str, Any], *, source: str = "<mapping>", environ: Mapping[str, str] | None = None
) -> Settings:
    """Build settings from a mapping (tests, embedded defaults); same rules as a file."""

    doc = Document(source=source, data=copy.deepcopy(dict(data)))
    return _finish(doc, environ or {})
