"""The config loader against broken YAML: arbitrary text and mutated valid configs.

Property: loading either gives settings or raises ConfigError, whose every issue names the
file (and a key or line when there is one); no other exception escapes, so
``receiver config check`` and every role print a clear answer instead of a traceback.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from receiver.config.files import ConfigError
from receiver.config.loader import load_settings
from receiver.config.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = yaml.safe_load((ROOT / "config" / "receiver.example.yaml").read_text())
FUZZ = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _load(path: Path, text: str | bytes) -> Settings | None:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    try:
        return load_settings(path, environ={})
    except ConfigError as exc:
        assert exc.issues, "a ConfigError without an issue"
        for issue in exc.issues:
            assert issue.source == str(path), issue
            assert issue.message.strip(), issue
        assert str(path) in exc.render()
        return None


@FUZZ
@given(text=st.text(max_size=400))
def test_arbitrary_text(tmp_path: Path, text: str) -> None:
    _load(tmp_path / "receiver.yaml", text)


@FUZZ
@given(raw=st.binary(max_size=300))
def test_arbitrary_bytes(tmp_path: Path, raw: bytes) -> None:
    _load(tmp_path / "receiver.yaml", raw)


yaml_fragments = st.sampled_from(
    [
        ":",
        "- -",
        "{",
        "[",
        "key: [unclosed",
        "a: b: c",
        "\t- tab",
        "&anchor x",
        "*nope",
        "!!python/object:os.system echo",
        "? complex",
        "%YAML 9.9",
        "---\n---",
        "'",
        '"',
        "redis: {url: 5}",
        "web:\n  port: -1",
        "tenants: [{}]",
        "sinks: 7",
        "x" * 300,
        "redis:\n  cluster: true\n  url: unix:///tmp/r.sock",
    ]
)


@FUZZ
@given(lines=st.lists(yaml_fragments, min_size=1, max_size=6))
def test_broken_yaml_fragments(tmp_path: Path, lines: list[str]) -> None:
    _load(tmp_path / "receiver.yaml", "\n".join(lines))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3)
    ),
    max_leaves=8,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += _paths(value, (*prefix, i))
    return out


PATHS = _paths(EXAMPLE)


@FUZZ
@given(
    mutations=st.lists(
        st.tuples(st.sampled_from(PATHS), st.one_of(st.just("delete"), json_values)),
        min_size=1,
        max_size=4,
    )
)
def test_mutated_example(tmp_path: Path, mutations: list[tuple[tuple[Any, ...], Any]]) -> None:
    data = copy.deepcopy(EXAMPLE)
    for path, value in mutations:
        node = data
        try:
            for part in path[:-1]:
                node = node[part]
            if value == "delete":
                del node[path[-1]]
            else:
                node[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed or replaced the parent
    _load(tmp_path / "receiver.yaml", yaml.safe_dump(data, allow_unicode=True))


def test_the_example_itself_loads(tmp_path: Path) -> None:
    # The mutations start from a valid config: otherwise they would test nothing.
    path = tmp_path / "receiver.yaml"
    path.write_text((ROOT / "config" / "receiver.example.yaml").read_text())
    for name in ("routes.example.yaml",):
        (tmp_path / name).write_text((ROOT / "config" / name).read_text())
    assert _load(path, path.read_text()) is not None
