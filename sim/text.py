r"""Text from users made safe to show: invisible and direction-changing characters made visible, long text cut.

A scenario's description or a path on the command line can hold control characters (a terminal obeys ANSI
escapes) or Unicode bidirectional overrides (which reorder what a reader sees: "Trojan Source"). Shown to a
person, each becomes its Python escape (``\u202e``), so what is read is what is there.
"""

from __future__ import annotations

import re
import unicodedata

KEPT = {"\n", "\t"}  # layout, not hidden content
HIDDEN_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}  # controls, format (bidi, zero-width), unassigned
WORD_CHARS = 300  # a longer run without spaces (a path, a pasted value) is shown by its two ends
MESSAGE_CHARS = 2000  # and a whole message is cut after this: a pasted file says nothing more


def visible(text: str) -> str:
    r"""``text`` with every control, format (bidi override, zero-width) or separator character as its escape.

    Newlines and tabs are kept. The one character U+202E becomes the six characters ``\u202e``.
    """
    if text.isascii() and text.isprintable():  # the common case: nothing hidden (only U+0020-U+007E)
        return text
    return "".join(_escape(char) for char in text)


def _escape(char: str) -> str:
    if char in KEPT or unicodedata.category(char) not in HIDDEN_CATEGORIES:
        return char
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def cut(text: str, limit_chars: int = MESSAGE_CHARS, word_chars: int = WORD_CHARS) -> str:
    """``text`` with long words shortened, then cut to at most ``limit_chars``; what is left out is counted.

    A run of more than ``word_chars`` non-spaces (a path, a pasted value) keeps its two ends, so the rest of a
    message (what is wrong, what to do) survives.
    """
    text = re.sub(rf"\S{{{word_chars + 1},}}", lambda m: _shorten(m.group(), word_chars), text)
    if len(text) <= limit_chars:
        return text
    return f"{text[:limit_chars]}... ({len(text) - limit_chars:,} more characters)"


def _shorten(word: str, word_chars: int) -> str:
    head, tail = word_chars * 2 // 3, word_chars // 3
    return f"{word[:head]}...({len(word) - head - tail:,} characters)...{word[-tail:]}"


def shown(text: str, limit_chars: int = MESSAGE_CHARS) -> str:
    """``text`` as it should reach a person: every hidden character visible, then cut to ``limit_chars``."""
    return cut(visible(text), limit_chars)
