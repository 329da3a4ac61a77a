"""One registry per kind of choice, in the style of timm's ``register_model`` /
``create_model``: a name maps to an entry (a function, a class, a spec), and everything that
lists the choices (the CLI's enums, the server's schema, the docs' JSON Schemas, error
messages) reads them from the registry, so adding a choice is one registered entry::

    ROLLUPS = Registry("rollup")

    @ROLLUPS.register("max")
    def best_pair(...): ...

    ROLLUPS.get("max")      # the function
    ROLLUPS.get("maxx")     # UnknownNameError: unknown rollup 'maxx'; choose one of: max
    ROLLUPS.names()         # ("max",), in registration order

An unknown name is an error that lists the valid ones, never a silent fallback.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from enum import Enum
from typing import Any, Generic, TypeVar

from sonicsearch.errors import UnknownNameError

T = TypeVar("T")
_DECORATE = object()  # register(name) without an entry: a decorator


class Registry(Generic[T]):
    """Names -> entries, in registration order.

    Args:
        kind: what a name names, for messages ("rollup" -> "unknown rollup 'x'; ...").
        error: the exception :meth:`get` raises (default :class:`UnknownNameError`, a
            ConfigError); called with the message.
        sort: list :meth:`names` sorted instead of in registration order.
    """

    def __init__(self, kind: str, error: Callable[[str], Exception] = UnknownNameError,
                 sort: bool = False):
        self.kind, self.error, self.sort = kind, error, sort
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: Any = _DECORATE) -> Callable[[T], T]:
        """Register ``entry`` under ``name``; without ``entry``, a decorator that registers
        what it decorates and returns it unchanged.

        Raises:
            ValueError: ``name`` is already registered (two entries would fight for it).
        """

        def add(item: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._entries[name] = item
            return item

        if entry is not _DECORATE:
            add(entry)
            return lambda item: item
        return add

    def get(self, name: str) -> T:
        """The entry of ``name``.

        Raises:
            self.error: an unknown name; the message lists the registered ones.
        """
        try:
            return self._entries[name]
        except (KeyError, TypeError):  # TypeError: an unhashable name
            raise self.error(f"unknown {self.kind} '{name}'; choose one of: "
                             f"{', '.join(self.names())}") from None

    def check(self, name: str) -> str:
        """``name`` itself when it is registered (see :meth:`get` for the error)."""
        self.get(name)
        return name

    def names(self) -> tuple[str, ...]:
        """The registered names (registration order, or sorted with ``sort``)."""
        return tuple(sorted(self._entries)) if self.sort else tuple(self._entries)

    def items(self) -> list[tuple[str, T]]:
        return [(n, self._entries[n]) for n in self.names()]

    def enum(self, cls_name: str, names: tuple[str, ...] | None = None) -> type[Enum]:
        """A ``str`` Enum of the names (members named with ``-`` as ``_``), for typer."""
        names = self.names() if names is None else names
        return Enum(cls_name, {n.replace("-", "_"): n for n in names}, type=str)  # type: ignore[return-value]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self.names())})"
