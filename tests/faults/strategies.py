"""Hypothesis strategies of hostile text: any Unicode string (controls, surrogates,
unassigned code points included), plus the fragments an attacker aims at Asterisk's
config syntax, alone, mixed into legitimate values, or repeated."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

# Every code point, surrogates and unassigned ones included (st.text() leaves out Cs).
ANY_CHAR = st.characters(codec=None, exclude_categories=())

# What would end a line, start a section, a comment or a directive, close a quote, add
# an argument or a variable, or hide itself, in any of the three files.
FRAGMENTS = (
    "\n", "\r", "\r\n", "\x00", "\t", "\x0b", "\x0c", "\x1b", "\x7f",
    "\u0085", "\u2028", "\u2029", "\u200b", "\u200e", "\u202e", "\u2066", "\ufeff",
    "\ud800", "\U000e0001", "\u00a0", "\u3000",
    "[", "]", "[x]", "[general]", "[globals]", "\n[evil]\ntype=endpoint",
    "#include", "#include /etc/passwd", "#exec /bin/sh", "#tryinclude x",
    ";", ";--", "--;", "\\", "\\;", '"', "'", "`", "=", "=>", ",", "(", ")", "|",
    "{", "}", "$", "${SHELL}", "$[1+1]", "<", ">", "&", "/", "@", "+", "-", ".", " ",
    "  ", "\u0301", "\u0130", "ß", "Ł", "\u4e2d", "\U0001f600", "general", "globals",
)

_fragment = st.sampled_from(FRAGMENTS)
_plain = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7e), max_size=12)
_letters = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
                   min_size=1, max_size=12)


def hostile_text(*, legit: tuple[str, ...] = ("Jan", "j.kowalski", "support", "+48123456")
                 ) -> st.SearchStrategy[str]:
    """Any string, weighted towards config syntax and near-valid values."""
    legit_values = st.sampled_from(legit) if legit else _letters
    joined = st.lists(st.one_of(_fragment, _plain, _letters, legit_values,
                                st.text(alphabet=ANY_CHAR, max_size=3)),
                      min_size=1, max_size=6).map("".join)
    injected = st.tuples(legit_values, _fragment, legit_values).map("".join)
    return st.one_of(
        st.text(alphabet=ANY_CHAR),          # all of Unicode
        st.text(),                           # hypothesis' default (edge cases it likes)
        joined,
        injected,
        _fragment,
        legit_values,
        _letters,
        st.text(alphabet=ANY_CHAR, min_size=60, max_size=400),  # lengths around the limits
    )


def each_field(check: Any, values: dict[str, Any]) -> None:
    """Run one check per field (each with its own value); a failure names the field.

    One hypothesis example draws a value for every field: 1,000 examples are 1,000
    cases per field, at a fraction of the cost of one run per field."""
    for field in sorted(values):
        try:
            check(field, values[field])
        except Exception as exc:  # noqa: BLE001 - any failure, named by its field
            raise AssertionError(f"field {field!r}, value {values[field]!r}: "
                                 f"{type(exc).__name__}: {exc}") from exc
