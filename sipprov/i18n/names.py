"""A person's full name as their language writes it.

Vietnamese (like Hungarian, Chinese, Japanese, Korean) puts the family name first:
given name "Bích Ngọc", family name "Trần Thị" is "Trần Thị Bích Ngọc"; Polish and
English put it last ("Łukasz Żółć"). `first_name` is always the given name and
`last_name` the family name; only the display order changes.
"""

from __future__ import annotations

from typing import Literal

# Languages (of ours) that write the family name first.
FAMILY_NAME_FIRST = frozenset({"vi"})

NameOrder = Literal["given_first", "family_first"]


def default_name_order(language: str) -> NameOrder:
    """A user without a name order of their own: the one of their language."""
    return "family_first" if language in FAMILY_NAME_FIRST else "given_first"


def ordered_full_name(first_name: str, last_name: str, order: str) -> str:
    """The full name in a user's name order (first_name is the given name)."""
    parts = (last_name, first_name) if order == "family_first" else (first_name, last_name)
    return " ".join(p for p in parts if p)


def full_name(first_name: str, last_name: str, language: str) -> str:
    return ordered_full_name(first_name, last_name, default_name_order(language))
