"""Reading YAML config files and reporting their errors precisely.

Every problem becomes a :class:`ConfigIssue` naming where it came from (a file and line, or an
environment variable), the key path (``tenants[0].client_id``) and what is wrong. Values are
never echoed: a wrong value may be a secret or a URL carrying one.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

Path_ = tuple[str | int, ...]

# pydantic error types whose message we phrase ourselves.
_MESSAGES = {
    "extra_forbidden": "unknown key",
    "missing": "required key is missing",
}


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One problem in a config: where, which key, what is wrong."""

    source: str
    path: str
    message: str
    line: int | None = None

    def render(self) -> str:
        where = f"{self.source}:{self.line}" if self.line else self.source
        key = f" {self.path}:" if self.path else ""
        return f"{where}:{key} {self.message}"


class ConfigError(Exception):
    """A config could not be loaded; carries every issue found, not just the first."""

    def __init__(self, issues: Iterable[ConfigIssue]) -> None:
        self.issues = list(issues)
        super().__init__(self.render())

    def render(self) -> str:
        n = len(self.issues)
        head = f"configuration invalid: {n} problem{'s' if n != 1 else ''}"
        return "\n".join([head, *("  " + i.render() for i in self.issues)])


def format_path(path: Iterable[str | int]) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


@dataclass
class Document:
    """A parsed YAML mapping plus where each key came from."""

    source: str
    data: dict[str, Any]
    lines: dict[Path_, int] = field(default_factory=dict)
    # key paths set from the environment, with the variable's name
    env_sources: dict[Path_, str] = field(default_factory=dict)

    @property
    def directory(self) -> Path:
        return Path(self.source).resolve().parent

    def locate(self, path: Path_) -> tuple[str, int | None]:
        """The source and line that best explains ``path`` (nearest ancestor we know)."""
        for n in range(len(path), -1, -1):
            prefix = path[:n]
            if prefix in self.env_sources:
                return f"environment {self.env_sources[prefix]}", None
            if prefix in self.lines:
                return self.source, self.lines[prefix]
        return self.source, None

    def issue(self, path: Path_, message: str) -> ConfigIssue:
        source, line = self.locate(path)
        return ConfigIssue(source, format_path(path), message, line)


def _line_map(node: yaml.Node, path: Path_, out: dict[Path_, int]) -> None:
    out[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                child = (*path, str(key_node.value))
                _line_map(value_node, child, out)
                out[child] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _line_map(item, (*path, i), out)


def read_yaml(path: str | os.PathLike[str]) -> Document:
    """Parse a YAML file whose top level must be a mapping."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([ConfigIssue(source, "", f"cannot read file: {exc.strerror}")]) from None
    except UnicodeDecodeError:
        raise ConfigError([ConfigIssue(source, "", "file is not UTF-8 text")]) from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        # Only the problem and its position: the context snippet may hold a secret.
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        problem = exc.problem or "syntax error"
        raise ConfigError([ConfigIssue(source, "", f"invalid YAML: {problem}", line)]) from None
    except yaml.YAMLError:
        raise ConfigError([ConfigIssue(source, "", "invalid YAML")]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([ConfigIssue(source, "", "the top level must be a mapping of keys")])
    lines: dict[Path_, int] = {}
    if node is not None:
        _line_map(node, (), lines)
    return Document(source=source, data=data, lines=lines)


def validation_issues(doc: Document, exc: ValidationError, base: Path_ = ()) -> list[ConfigIssue]:
    """Turn pydantic's errors into issues, without ever echoing an input value."""
    issues = []
    for err in exc.errors(include_input=False, include_url=False):
        loc: Path_ = (*base, *_clean_loc(doc.data, tuple(err["loc"])))
        message = _MESSAGES.get(err["type"], err["msg"])
        if err["type"] in ("value_error", "assertion_error"):
            message = message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
        issues.append(doc.issue(loc, message))
    return issues


def _clean_loc(data: Any, loc: Path_) -> Path_:
    """Drop the parts pydantic adds that are not keys (union tags, validator names)."""
    out: list[str | int] = []
    current = data
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        in_dict = isinstance(current, dict) and part in current
        in_list = isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current)
        if in_dict or in_list:
            current = current[part]
            out.append(part)
        elif last or not isinstance(current, dict | list):
            out.append(part)
            current = None
    return tuple(out)


def validate(
    model: type[BaseModel], doc: Document, context: Mapping[str, Any] | None = None
) -> BaseModel:
    try:
        return model.model_validate(doc.data, context=dict(context or {}))
    except ValidationError as exc:
        raise ConfigError(validation_issues(doc, exc)) from None
