"""Kubernetes objects out of files: what `kubectl get ... -o yaml` writes, read back.

Files are multi-document YAML (`.yaml`, `.yml`) or JSON (`.json`); a directory stands for every
such file below it, in sorted order. A `kind: List` document is flattened into its `items`. Every
object keeps where it came from, so a complaint about it can name the file and the line.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from proxy.control.translate import KubeObject

try:  # libyaml parses several times faster; PyYAML without it still works
    from yaml import CSafeLoader as SafeLoader
except ImportError:  # pragma: no cover - depends on how PyYAML was built
    from yaml import SafeLoader  # type: ignore[assignment]

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


class ManifestFileError(ValueError):
    """Files that cannot be served as routes; the one-line message names the file and the object."""


@dataclass(frozen=True, slots=True)
class Origin:
    """Where an object was read: the file, and the line its document or List item starts on."""

    file: Path
    line: int | None = None  # 1-based; None for JSON, which does not tell

    def __str__(self) -> str:
        return f"{self.file}:{self.line}" if self.line is not None else str(self.file)


@dataclass(frozen=True, slots=True)
class LoadedObject:
    obj: KubeObject
    origin: Origin


def manifest_files(paths: Sequence[Path]) -> list[Path]:
    """Every file to read for `paths`, in order: a file as given (even one that does not exist, so
    reading it says so), a directory's manifest files below it, sorted.

    Names starting with a dot are skipped inside directories: that is where Kubernetes keeps the
    timestamped copies behind a ConfigMap volume's symlinks (`..data`, `..2024_01_01...`), and
    where editors and atomic writers keep their temporary files.
    """
    files: list[Path] = []
    for path in paths:
        files.extend(_walk(path) if path.is_dir() else [path])
    return list(dict.fromkeys(files))  # a file given both by name and by its directory: once


def _walk(root: Path) -> list[Path]:
    found: list[Path] = []
    visited: set[tuple[int, int]] = set()  # symlinked directories may loop
    for directory, subdirectories, names in os.walk(root, followlinks=True):
        stat = os.stat(directory)
        if (stat.st_dev, stat.st_ino) in visited:
            subdirectories.clear()
            continue
        visited.add((stat.st_dev, stat.st_ino))
        subdirectories[:] = [name for name in subdirectories if not name.startswith(".")]
        found.extend(
            Path(directory, name)
            for name in names
            if not name.startswith(".") and name.endswith(MANIFEST_SUFFIXES)
        )
    return sorted(found, key=lambda path: path.parts)


def read_files(files: Sequence[Path]) -> tuple[tuple[Path, bytes], ...]:
    """The bytes of every file; ManifestFileError naming the first one that cannot be read."""
    contents: list[tuple[Path, bytes]] = []
    for file in files:
        try:
            contents.append((file, file.read_bytes()))
        except OSError as error:
            raise ManifestFileError(f"{file}: {error.strerror or error}") from None
    return tuple(contents)


def parse_files(contents: Sequence[tuple[Path, bytes]]) -> list[LoadedObject]:
    return [loaded for file, data in contents for loaded in parse_manifest(file, data)]


def parse_manifest(file: Path, data: bytes) -> list[LoadedObject]:
    """The objects in one file's bytes; ManifestFileError naming the file, line and problem."""
    json_file = file.suffix == ".json"
    documents = _json_documents(file, data) if json_file else _yaml_documents(file, data)
    objects: list[LoadedObject] = []
    for number, (document, origin, item_lines) in enumerate(documents, start=1):
        if document is None:  # an empty document: `---` twice, or only comments
            continue
        if not isinstance(document, Mapping):
            raise ManifestFileError(
                f"{origin}: document {number} is {_a(document)}, not a Kubernetes object"
            )
        objects.extend(_flattened(document, origin, item_lines))
    return objects


_Document = tuple[Any, Origin, Sequence[int] | None]


def _yaml_documents(file: Path, data: bytes) -> Iterator[_Document]:
    # safe_load_all, one document at a time, so each keeps the line it starts on.
    loader = SafeLoader(data)
    try:
        while loader.check_node():
            node = loader.get_node()
            assert node is not None  # check_node said a document follows
            origin = Origin(file, node.start_mark.line + 1)
            yield loader.construct_document(node), origin, _item_lines(node)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = Origin(file, mark.line + 1) if mark is not None else Origin(file)
        problem = error.problem or error.context or "cannot be parsed"
        raise ManifestFileError(f"{where}: invalid YAML: {problem}") from None
    except yaml.reader.ReaderError as error:  # bytes that are not UTF-8 or UTF-16 text
        raise ManifestFileError(
            f"{file}: invalid YAML: {error.reason} (byte {error.position})"
        ) from None
    except yaml.YAMLError as error:
        raise ManifestFileError(f"{file}: invalid YAML: {' '.join(str(error).split())}") from None
    finally:
        loader.dispose()


def _item_lines(node: yaml.Node) -> list[int] | None:
    """The line of each entry of a top-level `items:` sequence, for objects inside a List."""
    if not isinstance(node, yaml.MappingNode):
        return None
    for key, value in node.value:
        if key.value == "items" and isinstance(value, yaml.SequenceNode):
            return [item.start_mark.line + 1 for item in value.value]
    return None


def _json_documents(file: Path, data: bytes) -> Iterator[_Document]:
    try:
        document = json.loads(data)
    except json.JSONDecodeError as error:
        raise ManifestFileError(f"{file}:{error.lineno}: invalid JSON: {error.msg}") from None
    except UnicodeDecodeError as error:
        raise ManifestFileError(f"{file}: invalid JSON: {error}") from None
    yield document, Origin(file), None


def _flattened(
    document: KubeObject, origin: Origin, item_lines: Sequence[int] | None
) -> list[LoadedObject]:
    kind = document.get("kind")
    if not isinstance(kind, str) or not kind:
        raise ManifestFileError(f"{origin}: an object without a kind (Ingress, Service, ...)")
    if kind != "List":
        return [LoadedObject(document, origin)]
    items = document.get("items")
    if items is None:  # `items: null`, or none at all: an empty list, as kubectl reads it
        items = []
    if not isinstance(items, list):
        raise ManifestFileError(f"{origin}: List: items is {_a(items)}, not a list of objects")
    objects: list[LoadedObject] = []
    for index, item in enumerate(items):
        where = Origin(origin.file, item_lines[index]) if item_lines else origin
        if not isinstance(item, Mapping):
            raise ManifestFileError(
                f"{where}: List: items[{index}] is {_a(item)}, not a Kubernetes object"
            )
        objects.extend(_flattened(item, where, None))
    return objects


def _a(value: object) -> str:
    """How a YAML value that should have been a mapping reads in a message."""
    names = {str: "a string", list: "a list", int: "a number", float: "a number", bool: "a boolean"}
    return names.get(type(value), f"a {type(value).__name__}")
