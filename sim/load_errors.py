"""Validate a located tree against the model; turn its problems into located errors (part of :mod:`sim.load`).

Every message names the file, line and field it comes from, and for a misspelt key the nearest allowed one.
"""

from __future__ import annotations

import difflib
import re
import types
import typing

import pydantic

from sim.errors import ScenarioError
from sim.source import Located, dotted
from sim.tables import did_you_mean as _did_you_mean

MORE_SHOWN = 20  # at most this many other problems are listed after the first


def validate(model: type[pydantic.BaseModel], tree: Located):
    """``tree``'s data as a ``model``.

    Raises:
        ScenarioError: At the first problem (a misspelt key first, then by line), saying how many more there are;
            the others, each located and in line order, are its ``more_problems`` (:func:`more_problems`). A
            knock-on of another problem is not one: a list too short because its bad item was dropped, the key a
            misspelt key stands for missing, a union's other branches failing at the same place.
    """
    try:
        return model.model_validate(tree.data)
    except pydantic.ValidationError as exc:
        problems = _problems(exc.errors(include_url=False), tree.data, model)
        found = [(error["type"] != "extra_forbidden", _located_error(error, loc, tree, model))
                 for error, loc in problems]
        found.sort(key=lambda item: (item[0], item[1].line or 0))  # a misspelt key first, then in the file's order
        first, *rest = [located for _, located in found]
        if rest:
            first = ScenarioError(first.message + f" (and {len(rest)} more problem{'s' if len(rest) > 1 else ''})",
                                  file=first.file, line=first.line, path=first.path)
        first.more_problems = rest[:MORE_SHOWN]  # type: ignore[attr-defined]
        raise first from None


def more_problems(exc: BaseException) -> list[ScenarioError]:
    """The other problems :func:`validate` found besides ``exc`` (at most :data:`MORE_SHOWN`), each located."""
    return list(getattr(exc, "more_problems", ()))


def _problems(errors: list[dict], data: object, model: type) -> list[tuple[dict, tuple]]:
    """Pydantic's errors, each with its place in the data, a misspelt key first, without the knock-ons."""
    located = sorted(((error, _data_loc(error["loc"], data)) for error in errors),
                     key=lambda pair: pair[0]["type"] != "extra_forbidden")
    places = [loc for _, loc in located]
    misspelt = {(loc[:-1], _nearest(str(loc[-1]), fields_at(model, loc[:-1])))
                for error, loc in located if error["type"] == "extra_forbidden" and loc}
    out, seen = [], set()
    for error, loc in located:
        inner = any(len(other) > len(loc) and other[:len(loc)] == loc for other in places)
        stands_in = error["type"] == "missing" and loc and (loc[:-1], loc[-1]) in misspelt
        if loc in seen or inner or stands_in:
            continue
        seen.add(loc)
        out.append((error, loc))
    return out or located[:1]


def _nearest(word: str, choices: list[str]) -> str | None:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.5)
    return close[0] if close else None


def _located_error(error: dict, loc: tuple, tree: Located, model: type) -> ScenarioError:
    file, line = tree.where(loc)
    return ScenarioError(_message(error, loc, model), file=file, line=line, path=dotted(loc) or None)


def _data_loc(loc: tuple, data: object) -> tuple:
    """Drop pydantic's union tags from ``loc``, but never a part that is a key in the data (e.g. 'Foo')."""
    out = []
    for part in loc:
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
            data = data[part]
        elif _is_union_tag(part):
            continue
        else:
            data = None
        out.append(part)
    return tuple(out)


def _is_union_tag(part: object) -> bool:
    return isinstance(part, str) and (part[:1].isupper() or "[" in part)


def _message(error: dict, loc: tuple, model: type) -> str:
    kind, msg = error["type"], error["msg"]
    if kind == "extra_forbidden":
        allowed = fields_at(model, loc[:-1])
        return f"unknown key {loc[-1]!r}" + _did_you_mean(str(loc[-1]), allowed, "allowed keys")
    if kind == "missing":
        return f"missing required key {loc[-1]!r}" if loc else "missing required keys"
    if kind in ("value_error", "assertion_error"):
        return msg.split(", ", 1)[1] if ", " in msg else msg
    if kind == "literal_error" and isinstance(error.get("input"), str):  # a misspelt choice: name the nearest
        choices = re.findall(r"'([^']*)'", str(error.get("ctx", {}).get("expected", "")))
        near = difflib.get_close_matches(error["input"], choices, n=1, cutoff=0.5)
        return f"{msg} (got {error['input']!r})" + (f"; did you mean {near[0]!r}?" if near else "")
    return f"{msg} (got {error.get('input')!r})" if not isinstance(error.get("input"), (dict, list)) else msg


def fields_at(model: object, loc: tuple) -> list[str]:
    """Names (aliases where set) of the keys allowed at ``loc`` inside ``model``."""
    current = model
    for part in loc:
        current = _unwrap(current, part)
        if current is None:
            return []
    if isinstance(current, type) and issubclass(current, pydantic.BaseModel):
        return [f.alias or name for name, f in current.model_fields.items()]
    return []


def _unwrap(annotation: object, part: object) -> object:
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        fields = {f.alias or name: f for name, f in annotation.model_fields.items()}
        return _plain(fields[part].annotation) if part in fields else None
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (list, tuple) and isinstance(part, int):
        return _plain(args[0])
    if origin is dict:
        return _plain(args[1])
    return None


def _plain(annotation: object) -> object:
    """Strip Optional/Annotated wrappers from a type annotation."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            annotation = args[0] if len(args) == 1 else annotation
            if len(args) != 1:
                return annotation
        else:
            return annotation


def reference_error(tree: Located, path: tuple, what: str, name: str, choices: list[str]) -> ScenarioError:
    """The error for a ``name`` at ``path`` that is not one of ``choices``, with the nearest of them."""
    file, line = tree.where(path)
    return ScenarioError(f"unknown {what} {name!r}" + _did_you_mean(name, choices, f"known {what}s"),
                         file=file, line=line, path=dotted(path))
