"""Reading the mappings inside a Kubernetes object with the type checks the API server would have
made: a value of the wrong type is a `ManifestError` that names the object and the field."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from proxy.control.translate.objects import ManifestError


class Fields:
    """One mapping inside an object, read with the type checks the API server would have made."""

    __slots__ = ("_data", "_path", "_ref")

    def __init__(self, ref: str, path: str, data: Mapping[str, Any]) -> None:
        self._ref = ref
        self._path = path
        self._data = data

    def error(self, key: str | None, problem: str) -> ManifestError:
        where = ".".join(part for part in (self._path, key) if part)
        return ManifestError(
            f"{self._ref}: {where}: {problem}" if where else f"{self._ref}: {problem}"
        )

    def _get(self, key: str, types: tuple[type, ...], expected: str) -> Any:
        value = self._data.get(key)
        if value is None or (isinstance(value, types) and not _is_bool_for_int(value, types)):
            return value
        raise self.error(key, f"{show_value(value)} is not {expected}")

    def text(self, key: str) -> str | None:
        value: str | None = self._get(key, (str,), "a string")
        return value

    def required_text(self, key: str) -> str:
        value = self.text(key)
        if not value:
            raise self.error(key, "missing")
        return value

    def number(self, key: str) -> int | None:
        value: int | None = self._get(key, (int,), "an integer")
        return value

    def port(self, key: str) -> int | None:
        value = self.number(key)
        if value is not None and not 1 <= value <= 65535:
            raise self.error(key, f"{value} is not a port (1-65535)")
        return value

    def flag(self, key: str) -> bool | None:
        value: bool | None = self._get(key, (bool,), "true or false")
        return value

    def number_or_text(self, key: str) -> int | str | None:
        value: int | str | None = self._get(key, (int, str), "a number or a name")
        return value

    def child(self, key: str) -> Fields | None:
        value = self._get(key, (Mapping,), "a mapping")
        return None if value is None else Fields(self._ref, self._where(key), value)

    def children(self, key: str) -> list[Fields]:
        """The mappings in list `key` (absent or null: none)."""
        items: list[Any] = self._get(key, (list,), "a list") or []
        where = self._where(key)
        found = []
        for index, item in enumerate(items):
            if not isinstance(item, Mapping):
                raise self.error(f"{key}[{index}]", f"{show_value(item)} is not a mapping")
            found.append(Fields(self._ref, f"{where}[{index}]", item))
        return found

    def texts(self, key: str) -> list[str]:
        items: list[Any] = self._get(key, (list,), "a list") or []
        for index, item in enumerate(items):
            if not isinstance(item, str):
                raise self.error(f"{key}[{index}]", f"{show_value(item)} is not a string")
        return items

    def string_map(self, key: str) -> dict[str, str]:
        """Labels or annotations. Unquoted YAML numbers and booleans count as their text."""
        values: Mapping[Any, Any] = self._get(key, (Mapping,), "a mapping") or {}
        found: dict[str, str] = {}
        for name, value in values.items():
            if isinstance(value, bool):
                found[str(name)] = "true" if value else "false"
            elif value is None or isinstance(value, (str, int, float)):
                found[str(name)] = "" if value is None else str(value)
            else:
                raise self.error(f"{key}[{name!r}]", f"{show_value(value)} is not a string")
        return found

    def timestamp(self, key: str) -> datetime | None:
        value: str | datetime | None = self._get(key, (str, datetime), "a timestamp")
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value)
            except ValueError:
                raise self.error(key, f"{value!r} is not an RFC 3339 timestamp") from None
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)  # the API server writes UTC
        return value

    def _where(self, key: str) -> str:
        return f"{self._path}.{key}" if self._path else key


def _is_bool_for_int(value: Any, types: tuple[type, ...]) -> bool:
    """`True` is an int to Python, never to the API server."""
    return isinstance(value, bool) and bool not in types


def show_value(value: Any) -> str:
    """A wrong value as error messages show it: a mapping or a list by its kind, else its repr."""
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)
