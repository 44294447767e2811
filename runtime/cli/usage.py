"""One line for each usage error the command-line parser raises.

Typer shows a usage error as a usage line, a hint and a boxed message; wasmq shows one
line like every other error: ``error: <what was wrong>; see '<command> --help'``.
"""

from __future__ import annotations

from typing import Any

import typer

#: pydantic error types (typer converts values with pydantic) and how to say each.
_TYPE_NAMES = {
    "int_parsing": "a valid integer",
    "int_from_float": "a whole number",
    "float_parsing": "a valid number",
    "bool_parsing": "true or false",
}


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:] if text[:2] != text[:2].upper() else text


def _converted(exc: Any) -> str | None:
    """What a value conversion said, from the pydantic error behind it (if any)."""
    cause = exc.__cause__
    errors = getattr(cause, "errors", None)
    if not callable(errors):
        return None
    try:
        first = errors()[0]
    except (IndexError, TypeError):
        return None
    kind, value, ctx = first.get("type"), first.get("input"), first.get("ctx") or {}
    if kind in _TYPE_NAMES:
        return f"{value!r} is not {_TYPE_NAMES[kind]}"
    if kind in ("less_than_equal", "less_than"):
        return f"{value} is over the ceiling of {ctx.get('le', ctx.get('lt'))}"
    if kind in ("greater_than_equal", "greater_than"):
        return f"{value} is under the minimum of {ctx.get('ge', ctx.get('gt'))}"
    return None


def _message(exc: typer.TyperException) -> str:
    name = type(exc).__name__
    if name in ("BadParameter", "MissingParameter"):
        detail = _converted(exc)
        if detail is not None:
            hint = getattr(exc, "param_hint", None)
            param = getattr(exc, "param", None)
            if hint is None and param is not None:
                hint = param.get_error_hint()
            if isinstance(hint, (list, tuple)):
                hint = " / ".join(repr(h) for h in hint)
            return f"invalid value for {hint}: {detail}" if hint else f"invalid value: {detail}"
    text = exc.format_message().strip().rstrip(".")
    # click: "No such command 'x'. Did you mean 'y'?" -> "no such command 'x': did you mean 'y'?"
    head, sep, rest = text.partition(". ")
    if sep:
        text = f"{head}: {_lower_first(rest)}"
    return _lower_first(" ".join(text.split()))


def usage_line(exc: typer.TyperException) -> str:
    """``error: <message>; see '<command> --help'`` for one usage error."""
    message = _message(exc)
    ctx = getattr(exc, "ctx", None)
    if ctx is None or ctx.command.get_help_option(ctx) is None:
        return f"error: {message}"
    see = f"see '{ctx.command_path} {ctx.help_option_names[0]}'"
    return f"error: {message} ({see})" if message.endswith("?") else f"error: {message}; {see}"
