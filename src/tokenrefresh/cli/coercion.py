"""Plain values without pydantic: Typer's own coercion, minus its start-up cost.

Typer (0.2x) turns every parameter's value into its type through a pydantic TypeAdapter,
built the first time a value is processed; importing pydantic and building the adapters
costs more than the rest of Typer (`python -X importtime` shows it), and every command paid
it, `accounts token` included, although its values are strings, its own parsers' results,
or absent. `install` gives every Typer parameter a `PlainParam` that returns those values,
an int within its bounds and a valid choice's enum member exactly as Typer's adapters
would, and hands every other value (other numbers, paths, files, a parser's ValueError:
anything whose result or error message pydantic shapes) to Typer's own runtime parameter,
built then. So behaviour and messages are Typer's; only the values that need no
conversion skip pydantic.

On a Typer without runtime parameters (before pydantic coercion) `install` does nothing.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

__all__ = ["PlainParam", "install"]

_NOT_PLAIN = object()


class PlainParam:
    """A parameter's coercion: the plain cases here, the rest by Typer's runtime param."""

    def __init__(self, descriptor: Any) -> None:
        self.descriptor = descriptor
        self._typer: Any = None

    def coerce(self, value: Any, param: Any, ctx: Any) -> Any:
        """Typer's `RuntimeParam.coerce`, the same for the plain values."""
        multiple = param.multiple or param.nargs == -1
        if value is None:
            return () if multiple else None
        plain = self._plain(value, multiple)
        if plain is not _NOT_PLAIN:
            return plain
        return self.typer().coerce(value, param=param, ctx=ctx)

    def typer(self) -> Any:
        """Typer's own runtime parameter (pydantic), built at its first use."""
        if self._typer is None:
            from typer._coercion import build_runtime_param

            self._typer = build_runtime_param(self.descriptor)
        return self._typer

    def _plain(self, value: Any, multiple: bool) -> Any:
        descriptor = self.descriptor
        if descriptor.file_annotation is not None:
            return _NOT_PLAIN
        parser = descriptor.parameter_info.parser
        if multiple:
            # list[str] without a parser: Typer's list adapter makes a list of str.
            if (
                parser is None
                and descriptor.annotation == list[str]
                and isinstance(value, list | tuple)
                and all(isinstance(item, str) for item in value)
            ):
                return [str(item) for item in value]
            return _NOT_PLAIN
        if parser is not None:
            # Typer wraps the parser in a pydantic validator that returns its result as is;
            # only a ValueError (or AssertionError) is turned into pydantic's message.
            try:
                return parser(value)
            except (ValueError, AssertionError):
                return _NOT_PLAIN
        annotation = descriptor.annotation
        if annotation is str and isinstance(value, str):
            return str(value)
        # An int within its bounds (`-v`'s count): pydantic returns it as it is (clamping,
        # and the message for a value out of bounds, are left to it).
        if annotation is int and type(value) is int and _within(value, descriptor):
            return value
        # A choice: Click checked it against the enum's values; pydantic makes the member.
        if isinstance(annotation, type) and issubclass(annotation, Enum):
            if isinstance(value, annotation):
                return value
            if isinstance(value, str) and value in annotation._value2member_map_:
                return annotation(value)
        return _NOT_PLAIN


def _within(value: int, descriptor: Any) -> bool:
    info = descriptor.parameter_info
    low, high = getattr(info, "min", None), getattr(info, "max", None)
    if getattr(info, "clamp", False):
        return False
    return (low is None or value >= low) and (high is None or value <= high)


def install() -> None:
    """Typer's parameters get a PlainParam where they would build their runtime parameter
    (on every parameter, `--help` too: Typer makes that one anew for each command)."""
    try:
        from typer.core import _TyperParameter
    except ImportError:  # a Typer without pydantic coercion
        return
    if getattr(_TyperParameter, "_plain_values", False) or not hasattr(
        _TyperParameter, "get_runtime_param"
    ):
        return

    def get_runtime_param(self: Any) -> Any:
        if self._runtime_param is None:
            self._runtime_param = PlainParam(self.type_descriptor)
        return self._runtime_param

    setattr(_TyperParameter, "get_runtime_param", get_runtime_param)  # noqa: B010 - mypy
    setattr(_TyperParameter, "_plain_values", True)  # noqa: B010
