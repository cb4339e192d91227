"""Fuzzing the loader: whatever a scenario file holds, ``load`` returns a scenario or a located ScenarioError.

Never another exception (a traceback for the user), never a hang. Two sources of bad files: a shipped scenario
mutated at random (keys deleted, renamed or added, values replaced by odd scalars, lists and mappings), and
random bytes, text and YAML-token soup.
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sim.errors import ScenarioError
from sim.load import load
from sim.model.scenario import Scenario

ROOT = Path(__file__).resolve().parent.parent
SMOKE = ROOT / "scenarios" / "ci-smoke.yaml"
BASE = yaml.safe_load(SMOKE.read_text())

# Errors about the file as a whole, which have no line to name.
UNLOCATED = ("not UTF-8 text", "contains NUL bytes", "not readable as YAML text", "not valid YAML", "cannot be read")

# FUZZ_EXAMPLES=5000 for a longer hunt; the default keeps the file under ~15 s. No deadline: how long an example
# takes says nothing of its correctness, and a busy machine tripled it (a flaky failure).
FUZZ = settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "150")), deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

ODD_STRINGS = ["12 Mbps", "-1ms", "1e400Mbps", "", " ", "08:00", "24:01", "25:00", "7:5", "0", "0%", "-5%", "101%",
               "1.5Gbps", "80Mbit/s", "80 mbps", "Mbps", "1.2.3km", "0x10", "1_000", "nan", "NaNMbps", "infms",
               "1e308TB", "1e-400s", "∞", "é", "\u202e", "\x07", "\ud7ff", "gp_mediun", "fttp_1g", "adsl2plus",
               "gp_medium", "gpon", "../topologies", ".", "/", "a\x00b", "x" * 300, "2024-13-45", "~", "null",
               "yes", "!!python/object:os.system", "&a", "*a", "- a", "{a: 1}", "a: b", "#", "'", '"']
KEY_NAMES = ["name", "description", "seed", "window", "start", "end", "drain", "utilisation_bin", "load", "sites",
             "targets", "catalogue", "class", "count", "access", "distance", "aggregation", "gp_video_share",
             "volume_scale", "video", "loss", "transfers", "gp2gp", "link", "passing", "sessions",
             "acess", "windo", "Drain", "Video", "None", "1", "a[1]", "<<", "", " ", "é"]


def scalars() -> st.SearchStrategy:
    return st.one_of(
        st.none(), st.booleans(),
        st.integers(min_value=-(10**30), max_value=10**30),
        st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from(ODD_STRINGS),
        st.text(max_size=20),
    )


def values() -> st.SearchStrategy:
    keys = st.sampled_from(KEY_NAMES) | st.text(max_size=10)
    return st.recursive(scalars(), lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3),
                        max_leaves=6)


def _paths(node: object, path: tuple = ()) -> list[tuple]:
    """Every path into the document, the root included."""
    out = [path]
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, path + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += _paths(value, path + (i,))
    return out


def _get(doc: object, path: tuple) -> object:
    for part in path:
        doc = doc[part]
    return doc


@st.composite
def mutated_scenarios(draw) -> object:
    doc = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        path = draw(st.sampled_from(_paths(doc)))
        op = draw(st.sampled_from(["delete", "rename", "replace", "insert"]))
        if not path:  # the root: replace it, or add a key to it
            if op == "replace":
                doc = draw(values())
            elif isinstance(doc, dict):
                doc[draw(st.sampled_from(KEY_NAMES))] = draw(values())
            continue
        parent, last = _get(doc, path[:-1]), path[-1]
        if op == "delete":
            del parent[last]
        elif op == "replace":
            parent[last] = draw(values())
        elif op == "rename" and isinstance(parent, dict):
            new_key = draw(st.sampled_from(KEY_NAMES) | st.text(max_size=12))
            parent[new_key] = parent.pop(last)
        elif op == "insert" and isinstance(parent[last], dict):
            parent[last][draw(st.sampled_from(KEY_NAMES))] = draw(values())
    return doc


YAML_TOKENS = ["name: a", "window:", "sites:", "- ", "  ", "\t", "\n", ": ", "{", "}", "[", "]", ", ", "&a ", "*a",
               "!!python/object:os.system ", "!!set ", "!foo ", "? ", "<<: ", "%YAML 1.1\n", "%TAG ! tag:x,1:\n",
               "---\n", "...\n", "'", '"', "#", "08:00", "18:30", "80Mbps", "1e400", "9" * 5000, "2024-13-45",
               "|\n", ">-\n", "\\x", "\x85", "\u2028", "é", "~", "gp_medium", "adsl2plus", "count: 1", "1h"]
PRINTABLE = st.characters(blacklist_categories=("Cs", "Cc"))  # random bytes (st.binary) cover control characters


def yaml_soup() -> st.SearchStrategy:
    return st.lists(st.sampled_from(YAML_TOKENS) | st.text(PRINTABLE, max_size=5), max_size=30).map("".join)


@st.composite
def spliced_scenarios(draw) -> str:
    """The shipped scenario's text with a line replaced by, or a line inserted of, YAML-token soup."""
    lines = SMOKE.read_text().splitlines()
    i = draw(st.integers(min_value=0, max_value=len(lines)))
    keep = i + draw(st.integers(min_value=0, max_value=1))  # 0: insert before line i; 1: replace it
    return "\n".join(lines[:i] + [draw(yaml_soup())] + lines[keep:]) + "\n"


@pytest.fixture(scope="module")
def file(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz") / "scenario.yaml"


def assert_loads_or_locates(path: Path, n_lines: int) -> None:
    try:
        scenario = load(path)
    except ScenarioError as exc:
        text = str(exc)
        assert "\n" not in text, text
        assert exc.file == str(path), text
        if exc.line is None:
            assert text.startswith(f"{path}: "), text
            assert text[len(f"{path}: "):].startswith(UNLOCATED), text
        else:
            assert re.match(rf"{re.escape(str(path))}:{exc.line}[ :]", text), text
            assert 1 <= exc.line <= n_lines + 1, text
    else:
        assert isinstance(scenario, Scenario)


@FUZZ
@given(doc=mutated_scenarios())
def test_a_mutated_scenario_loads_or_fails_with_a_located_error(file, doc):
    text = yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)
    file.write_text(text, encoding="utf-8")
    assert_loads_or_locates(file, len(text.splitlines()))


@FUZZ
@given(blob=st.binary(max_size=400) | (yaml_soup() | spliced_scenarios()).map(lambda s: s.encode("utf-8")))
def test_any_bytes_load_or_fail_with_a_located_error(file, blob):
    file.write_bytes(blob)
    lines = blob.decode("utf-8", "replace").splitlines()
    assert_loads_or_locates(file, len(lines))


def test_the_unmutated_base_loads(file):
    """The fuzz starts from a valid document: dumped back to YAML, the shipped scenario still loads."""
    file.write_text(yaml.safe_dump(BASE, sort_keys=False), encoding="utf-8")
    assert load(file).name == "ci-smoke"
