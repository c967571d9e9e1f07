"""Loading YAML that may be hostile: bounded, plain, and with every value's location.

On top of PyYAML's safe loader this refuses: input over a byte cap or not UTF-8, any tag
beyond plain scalars, lists and mappings, duplicate keys, nesting deeper than a bound,
and documents whose aliases would expand past a node budget ("billion laughs"). Dates
stay strings, to be parsed where their meaning is known. Each value's line and column
are kept so that errors can say ``FILE:LINE:COL: path.to.field: message``.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

MAX_BYTES = 1024 * 1024
MAX_DEPTH = 32
MAX_NODES = 100_000  # after alias expansion
_ALLOWED_TAGS = frozenset(
    f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "seq", "map")
)

Path = tuple[str | int, ...]


class YamlError(ValueError):
    """The document is not acceptable YAML; ``line``/``column`` are 1-based, 0 if unknown."""

    def __init__(self, message: str, line: int = 0, column: int = 0, path: Path = ()) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column
        self.path = path


@dataclass(frozen=True)
class LoadedYaml:
    """A loaded document and where each of its values stands in the text."""

    data: Any
    locations: Mapping[Path, tuple[int, int]]  # where each field's key (or list item) stands
    values: Mapping[Path, tuple[int, int]] = field(default_factory=dict)  # scalar values

    def where(self, path: Path) -> tuple[int, int]:
        """The (line, column) of ``path``'s key, or of its nearest located ancestor."""
        while path and path not in self.locations:
            path = path[:-1]
        return self.locations.get(path, (0, 0))

    def where_value(self, path: Path) -> tuple[int, int]:
        """The (line, column) of ``path``'s value when it is a plain value, else :meth:`where`."""
        return self.values.get(path) or self.where(path)


# libyaml's parser (when PyYAML was built with it) composes ~15 times faster than the
# pure-Python one: a hostile 1 MiB document is refused in a fraction of a second.
_Base: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_Base):  # type: ignore[valid-type,misc]
    """The safe loader without implicit timestamps (dates stay strings)."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, LookupError, TypeError):  # PyYAML's converters on "0x_", "!!bool x"
            kind = node.tag.rsplit(":", 1)[-1]
            raise yaml.constructor.ConstructorError(
                None, None, f"not a valid {kind}", node.start_mark
            ) from None

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        mapping: dict[Hashable, Any] = super().construct_mapping(node, deep=deep)
        if len(mapping) < len(node.value):  # keys spelt apart can be equal typed: 1 and 0x1
            seen: set[Hashable] = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r}", key_node.start_mark
                    )
                seen.add(key)
        return mapping


# PyYAML's YAML 1.1 patterns for numbers, without the base-60 forms ("1:30" = 90).
_INT = re.compile(
    r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$"
)
_FLOAT = re.compile(
    r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
)
_REPLACED = {"tag:yaml.org,2002:int": _INT, "tag:yaml.org,2002:float": _FLOAT}


def _plain_resolvers() -> dict[str, list[tuple[str, re.Pattern[str]]]]:
    """YAML 1.1's implicit types, minus the surprising ones.

    Dates stay strings (parsed where their meaning is known), and base-60 numbers are
    gone: ``22:00`` is a time of day in a policy, not the integer 1320.
    """
    return {
        first: [
            (tag, _REPLACED.get(tag, regexp))
            for tag, regexp in resolvers
            if tag != "tag:yaml.org,2002:timestamp"
        ]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }


_Loader.yaml_implicit_resolvers = _plain_resolvers()


def _mark(node: yaml.Node) -> tuple[int, int]:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


class _Checker:
    """Walks a composed document once: validates it and records where everything stands."""

    def __init__(self) -> None:
        self.locations: dict[Path, tuple[int, int]] = {}
        self.values: dict[Path, tuple[int, int]] = {}
        self._sizes: dict[int, int] = {}  # by node id: aliased nodes are walked once

    def check(self, node: yaml.Node, path: Path = (), depth: int = 0) -> int:
        """Validate ``node``; return its size once aliases are expanded."""
        if id(node) in self._sizes:
            return self._sizes[id(node)]
        if depth > MAX_DEPTH:
            raise YamlError(f"nested deeper than {MAX_DEPTH} levels", *_mark(node), path)
        if node.tag not in _ALLOWED_TAGS:
            raise YamlError(f"tag {node.tag} is not allowed", *_mark(node), path)
        self.locations.setdefault(path, _mark(node))
        size = 1
        if isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                size += self.check(item, (*path, index), depth + 1)
        elif isinstance(node, yaml.MappingNode):
            size += self._mapping(node, path, depth)
        self._sizes[id(node)] = size
        if size > MAX_NODES:
            raise YamlError(f"document expands to more than {MAX_NODES} values", *_mark(node), path)
        return size

    def _mapping(self, node: yaml.MappingNode, path: Path, depth: int) -> int:
        size = 0
        seen: set[str] = set()
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise YamlError("mapping keys must be plain values", *_mark(key_node), path)
            key = str(key_node.value)
            if key == "<<":
                raise YamlError("merge keys (<<) are not allowed", *_mark(key_node), path)
            if key_node.tag not in _ALLOWED_TAGS:
                raise YamlError(f"tag {key_node.tag} is not allowed", *_mark(key_node), path)
            if key in seen:
                raise YamlError(f"duplicate key {key!r}", *_mark(key_node), (*path, key))
            seen.add(key)
            self.locations.setdefault((*path, key), _mark(key_node))
            if isinstance(value_node, yaml.ScalarNode):
                self.values.setdefault((*path, key), _mark(value_node))
            size += 1 + self.check(value_node, (*path, key), depth + 1)
        return size


def _unacceptable(text: str, error: yaml.reader.ReaderError) -> YamlError:
    """A character YAML does not allow (control characters, NUL), with its place."""
    line = text.count("\n", 0, error.position) + 1
    column = error.position - text.rfind("\n", 0, error.position)
    return YamlError(f"character #x{error.character:04x} is not allowed", line, column)


def load(data: bytes, *, max_bytes: int = MAX_BYTES) -> LoadedYaml:
    """Parse one YAML document from ``data`` under the rules above.

    Raises :class:`YamlError` with the location of the first problem.
    """
    if len(data) > max_bytes:
        raise YamlError(f"larger than {max_bytes} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise YamlError(f"not UTF-8 (byte {e.start})") from None
    try:
        loader = _Loader(text)
    except yaml.reader.ReaderError as e:  # the pure-Python reader refuses before parsing
        raise _unacceptable(text, e) from None
    try:
        node = loader.get_single_node()
        if node is None:
            return LoadedYaml(None, {})
        checker = _Checker()
        checker.check(node)
        value = loader.construct_document(node)
    except yaml.reader.ReaderError as e:  # libyaml refuses while parsing
        raise _unacceptable(text, e) from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        problem = str(e.problem or e.context or "invalid YAML")
        if "nesting depth" in problem:  # libyaml's own limit, far above ours
            problem = f"nested deeper than {MAX_DEPTH} levels"
        raise YamlError(problem, line, column) from None
    except yaml.YAMLError as e:
        raise YamlError(str(e)) from None
    except RecursionError:
        raise YamlError(f"nested deeper than {MAX_DEPTH} levels") from None
    finally:
        loader.dispose()
    return LoadedYaml(value, checker.locations, checker.values)
