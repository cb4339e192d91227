"""verdicts.json's text: the fast indented encoder writes exactly what ``json.dumps(doc, indent=1)`` writes."""

from __future__ import annotations

import json

import pytest

from sim.results import dumps_indented


@pytest.mark.parametrize("doc", [
    # Text that looks like the encoder's own separators, escapes and non-ASCII; NaN, infinities and tiny floats.
    {"all_pass": False, "site_classes": [{"a": 1, "b": "x, y\n},\n{z", "c": None, "d": float("nan"), "e": 1.5e-7,
                                          "f": True}], "sites": []},
    {"all_pass": True, "site_classes": [{"a": "é ☃ \u202e"}, {"a": -0.0, "b": float("-inf")}],
     "sites": [{"s": "}", "t": "{"}]},
    # Shapes it leaves to json.dumps: empty, an empty record, nested lists and dicts, a list of numbers.
    {}, {"x": [{}]}, {"x": [[1]]}, {"x": {"y": 1}}, {"x": [1, 2]},
])
def test_indented_text_is_json_dumps_with_indent_one(doc):
    assert dumps_indented(doc) == json.dumps(doc, indent=1)


def test_indented_text_by_hand():
    assert dumps_indented({"ok": True, "rows": [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]}) == (
        '{\n "ok": true,\n "rows": [\n  {\n   "a": 1,\n   "b": "x"\n  },\n  {\n   "a": 2,\n   "b": "y"\n  }\n ]\n}')
