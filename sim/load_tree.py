"""Located trees (data with the file and line of each part): merge, cut and set parts (part of :mod:`sim.load`).

``--set key=value`` overrides are applied here too, on the merged scenario before it is validated.
"""

from __future__ import annotations

import difflib

from sim import load_errors, source
from sim.errors import ScenarioError
from sim.model.scenario import Scenario
from sim.source import Located, dotted


def cut(tree: Located, prefix: tuple) -> Located:
    """Take the part of ``tree`` under ``prefix`` (its data, if any, and its lines) out of ``tree.lines``."""
    data = tree.data
    for key in prefix:
        data = data.get(key) if isinstance(data, dict) else None
    n = len(prefix)
    lines = {p[n:]: w for p, w in tree.lines.items() if p[:n] == prefix}
    for path in [p for p in tree.lines if p[:n] == prefix and len(p) > n]:
        del tree.lines[path]
    return Located(data, lines)


def put(tree: Located, prefix: tuple, part: Located) -> None:
    """Set ``part`` at ``prefix`` of ``tree`` (a mapping path), with its lines."""
    data = tree.data
    for key in prefix[:-1]:
        data = data[key]
    data[prefix[-1]] = part.data
    tree.lines.update({prefix + p: w for p, w in part.lines.items() if p})


def sub(tree: Located, prefix: tuple) -> Located:
    """The part of ``tree`` under ``prefix`` (a path that exists), with its lines; ``tree`` is unchanged."""
    data = tree.data
    for key in prefix:
        data = data[key]
    n = len(prefix)
    return Located(data, {p[n:]: w for p, w in tree.lines.items() if p[:n] == prefix})


def attach(tree: Located, prefix: tuple, part: Located) -> Located:
    """Set ``part`` at the top-level key ``prefix[0]`` of ``tree``, with its lines; return ``tree``."""
    tree.data[prefix[0]] = part.data
    tree.lines.update({prefix + p: w for p, w in part.lines.items()})
    return tree


def overlay(base: Located, top: Located) -> Located:
    """Deep-merge ``top`` over ``base`` (mappings merge, anything else replaces), keeping lines."""
    data = _merge_data(base.data, top.data)
    lines = dict(base.lines)
    for path in [p for p in lines if any(p[:len(q)] == q for q in _replaced_paths(base.data, top.data, ()))]:
        del lines[path]
    lines.update(top.lines)
    return Located(data, lines)


def _merge_data(base: object, top: object) -> object:
    if isinstance(base, dict) and isinstance(top, dict):
        out = dict(base)
        for key, value in top.items():
            out[key] = _merge_data(base[key], value) if key in base else value
        return out
    return top


def _replaced_paths(base: object, top: object, path: tuple) -> list[tuple]:
    if isinstance(base, dict) and isinstance(top, dict):
        return [q for key in top if key in base for q in _replaced_paths(base[key], top[key], path + (key,))]
    return [path]


def override(tree: Located, key: str, value: str, inventory_rows: int = 0) -> None:
    """Set ``key`` (dotted; list items by index) to ``value`` (read as YAML) in the merged tree.

    ``access`` sets every site group's access. A group's line length is dropped where the new profile does not
    derate by distance (a scenario's group may not give one there); the last ``inventory_rows`` groups, an
    inventory's sites, keep theirs, as an inventory keeps every site's length (shown, and used by the planner).
    """
    where = f"--set {key}"
    parsed = source.parse(value, where).data if value.strip() else None
    if parsed is None:
        raise ScenarioError(f"no value given for {key!r}", file=where)
    if key == "access":  # every site group's access; line lengths dropped where the profile has no derating
        profile = (tree.data.get("catalogue") or {}).get("profiles", {}).get(parsed)
        groups = tree.data.get("sites") or []
        for i, group in enumerate(groups):
            override(tree, f"sites.{i}.access", value)
            written = i < len(groups) - inventory_rows
            if written and isinstance(group, dict) and isinstance(profile, dict) and not profile.get("derating"):
                group.pop("distance", None)
        return
    parts = [int(p) if p.isdigit() else p for p in key.split(".")]
    if len(parts) == 4 and parts[0] == "catalogue" and parts[1] in ("profiles", "aggregations") \
            and parts[3] == "buffer":  # the old single buffer: both directions' (sim.model.catalogue.Buffered)
        for direction in ("buffer_up", "buffer_down"):
            override(tree, ".".join(map(str, parts[:3] + [direction])), value)
        return
    data, path = tree.data, ()
    for part in parts[:-1]:
        data = _child(data, part, path, key)
        path += (part,)
    last = parts[-1]
    _child(data, last, path, key, creating=True)
    data[last] = parsed
    tree.lines = {p: w for p, w in tree.lines.items() if p[:len(path) + 1] != path + (last,)}
    tree.lines[path + (last,)] = ("--set", None)


def _child(data: object, part: object, path: tuple, key: str, creating: bool = False) -> object:
    """The item ``part`` of ``data`` (a mapping or list) on the way along ``--set key``, or a located error."""
    if isinstance(data, list) and isinstance(part, int):
        if part < len(data):
            return data[part]
        raise ScenarioError(f"{dotted(path) or 'the scenario'} has {len(data)} items; no item {part}",
                            file=f"--set {key}")
    if isinstance(data, dict) and isinstance(part, str):
        if part in data:
            return data[part]
        known = sorted(set(data) | set(load_errors.fields_at(Scenario, path)))
        if part in known:  # a key the model allows, not given: created (a section as an empty mapping)
            if not creating:
                data[part] = {}
            return data.get(part)
        near = difflib.get_close_matches(part, known, n=1, cutoff=0.5)
        hint = f"; did you mean {'.'.join(map(str, path + (near[0],)))!r}?" if near else \
            (f"; keys there: {', '.join(known)}" if known else "")
        raise ScenarioError(f"no key {'.'.join(map(str, path + (part,)))!r} in the scenario{hint}",
                            file=f"--set {key}")
    raise ScenarioError(f"{dotted(path) or 'the scenario'} is a single value; it has no {part!r}",
                        file=f"--set {key}")
