"""Read YAML safely into plain data, remembering the file and line of every value.

Only YAML's core types are built (mappings, lists, strings, numbers, booleans, null); any tag that
would construct an object is an error, as is a key given twice. The line map lets validation errors
name the line a bad value sits on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from sim.errors import ScenarioError

Path_ = tuple  # a field path: keys (str) and list indices (int)
_NUMBER_TAGS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
_COLLECTION_TAGS = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")
MAX_VALUES = 100_000  # far above any real file; stops aliases that expand exponentially ("billion laughs")


@dataclass
class Located:
    """Plain data read from YAML, with ``lines[path] = (file, line)`` for every value and key."""

    data: object
    lines: dict = field(default_factory=dict)

    def where(self, path: Path_) -> tuple[str | None, int | None]:
        """Return (file, 1-based line) of ``path`` or of its nearest ancestor that has one."""
        path = tuple(path)
        while True:
            if path in self.lines:
                return self.lines[path]
            if not path:
                return (None, None)
            path = path[:-1]


def read(file: Path | str) -> Located:
    """Read a YAML file into plain data with line numbers.

    Raises:
        ScenarioError: If the file is missing, not UTF-8 text, not YAML, empty, or uses tags.
    """
    name = str(file)
    try:
        text = Path(file).read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ScenarioError("no such file", file=name) from None
    except IsADirectoryError:
        raise ScenarioError("is a folder, not a YAML file", file=name) from None
    except UnicodeDecodeError as exc:
        raise ScenarioError(f"not UTF-8 text (byte {exc.start}); is this a YAML file?", file=name) from None
    except (OSError, ValueError) as exc:
        raise ScenarioError(f"cannot be read: {getattr(exc, 'strerror', None) or exc}", file=name) from None
    return parse(text, name)


def parse(text: str, name: str = "<string>") -> Located:
    """Parse YAML text into plain data with line numbers; see :func:`read`."""
    if "\x00" in text:
        raise ScenarioError("contains NUL bytes; is this a YAML file?", file=name)
    try:
        loader = yaml.SafeLoader(text)
    except yaml.YAMLError as exc:
        raise ScenarioError(f"not readable as YAML text: {exc}".splitlines()[0], file=name) from None
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise ScenarioError(f"not valid YAML: {exc.problem or exc.context}", file=name, line=line) from None
    except yaml.YAMLError as exc:
        raise ScenarioError(f"not valid YAML: {exc}", file=name) from None
    except RecursionError:
        raise ScenarioError("not valid YAML: nested too deeply", file=name, line=loader.get_mark().line + 1) from None
    finally:
        loader.dispose()
    if node is None:
        raise ScenarioError("the file is empty", file=name, line=1)
    located = Located(None)
    try:
        located.data = _build(node, (), name, located.lines, loader)
    except RecursionError:
        raise ScenarioError("nested too deeply to be a scenario", file=name, line=1) from None
    return located


def _build(node: yaml.Node, path: Path_, name: str, lines: dict, loader: yaml.SafeLoader) -> object:
    lines[path] = (name, node.start_mark.line + 1)
    if len(lines) > MAX_VALUES:
        raise ScenarioError(f"more than {MAX_VALUES:,} values (do aliases expand too far?)",
                            file=name, line=node.start_mark.line + 1, path=dotted(path))
    if isinstance(node, yaml.CollectionNode) and node.tag not in _COLLECTION_TAGS:
        raise ScenarioError(f"tag {node.tag!r} is not allowed; write plain values",
                            file=name, line=node.start_mark.line + 1, path=dotted(path))
    if isinstance(node, yaml.MappingNode):
        return _build_mapping(node, path, name, lines, loader)
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, path + (i,), name, lines, loader) for i, item in enumerate(node.value)]
    if node.tag in _NUMBER_TAGS and ":" in node.value:
        return node.value  # YAML 1.1 would read 18:30 as the base-60 number 1110; keep it a clock time
    return _construct(node, path, name, loader)


def _construct(node: yaml.ScalarNode, path: Path_, name: str, loader: yaml.SafeLoader) -> object:
    try:
        return loader.construct_object(node, deep=True)
    except yaml.YAMLError:
        raise ScenarioError(f"tag {node.tag!r} is not allowed; write plain values",
                            file=name, line=node.start_mark.line + 1, path=dotted(path)) from None
    except ValueError as exc:  # e.g. an int of over 4300 digits, or a date such as 2024-13-45
        raise ScenarioError(f"cannot read {node.value[:40]!r} ({exc}); quote it to make it text",
                            file=name, line=node.start_mark.line + 1, path=dotted(path)) from None


def _build_mapping(node: yaml.MappingNode, path: Path_, name: str, lines: dict, loader) -> dict:
    out: dict = {}
    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            raise ScenarioError("a key must be a plain name", file=name,
                                line=key_node.start_mark.line + 1, path=dotted(path))
        key = str(_construct(key_node, path, name, loader))
        if key == "<<":
            raise ScenarioError("merge keys ('<<') are not supported; write the fields out",
                                file=name, line=key_node.start_mark.line + 1, path=dotted(path))
        if key in out:
            raise ScenarioError(f"key {key!r} is given twice", file=name,
                                line=key_node.start_mark.line + 1, path=dotted(path))
        out[key] = _build(value_node, path + (key,), name, lines, loader)
        lines[path + (key,)] = (name, key_node.start_mark.line + 1)
    return out


def dotted(path: Path_) -> str:
    """Format a field path the way error messages show it: ``sites[2].access``."""
    text = ""
    for part in path:
        if isinstance(part, str) and not part.isprintable():
            part = repr(part)  # a key such as '\n' must not break the one-line message
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text
