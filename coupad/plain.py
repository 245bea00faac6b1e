"""Dataclasses as plain data and back, checked: the one codec of the worker pipe's messages
(:mod:`coupad.messages`) and of the status snapshot (:mod:`coupad.snapshot`).

:func:`to_plain` turns a dataclass (nested ones, tuples, dicts) into dicts, lists and scalars;
:func:`from_plain` builds it again from such data and checks every field against its type
hint — present unless it has a default, no unknown field, ``int`` not ``bool``, a float where
a float is due — raising :class:`PlainError` with the path of the first wrong field.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Union

from coupad.errors import CoupadError


class PlainError(CoupadError):
    """Plain data that is not the record it should be."""


def to_plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    return value


def from_plain(kind: type, data: Any, where: str) -> Any:
    """A ``kind`` dataclass from plain ``data``; PlainError naming ``where`` if it is not one."""
    if not isinstance(data, dict):
        raise PlainError(f"{where}: a record expected, got {show(data)}")
    hints = typing.get_type_hints(kind)
    values = {}
    for f in dataclasses.fields(kind):
        if f.name not in data:
            if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING:
                continue
            raise PlainError(f"{where}: field {f.name!r} is missing")
        values[f.name] = _check(hints[f.name], data[f.name], f"{where}.{f.name}")
    extra = set(data) - {f.name for f in dataclasses.fields(kind)}
    if extra:
        raise PlainError(f"{where}: unknown fields {sorted(extra)}")
    return kind(**values)


def _check(hint: Any, value: Any, where: str) -> Any:
    """``value`` as the type ``hint`` says, or PlainError."""
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return _check(option, value, where)
            except PlainError:
                continue
        raise PlainError(f"{where}: {show(value)} is not {hint}")
    if origin is tuple:
        (item,) = typing.get_args(hint)[:1]
        if not isinstance(value, (list, tuple)):
            raise PlainError(f"{where}: a list expected, got {show(value)}")
        return tuple(_check(item, v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        key_type, value_type = typing.get_args(hint)
        if not isinstance(value, dict):
            raise PlainError(f"{where}: a mapping expected, got {show(value)}")
        return {_check(key_type, k, where): _check(value_type, v, f"{where}[{k!r}]")
                for k, v in value.items()}
    if dataclasses.is_dataclass(hint):
        return from_plain(typing.cast(type, hint), value, where)
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif hint is int or hint is str or hint is bool:
        if isinstance(value, hint) and (hint is bool or not isinstance(value, bool)):
            return value
    raise PlainError(f"{where}: {show(value)} is not {getattr(hint, '__name__', hint)}")


def show(value: Any) -> str:
    """A value for an error message, at most 80 characters."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
