"""A person's full name as their language writes it.

Vietnamese (like Hungarian, Chinese, Japanese, Korean) puts the family name first:
given name "Bích Ngọc", family name "Trần Thị" is "Trần Thị Bích Ngọc"; Polish and
English put it last ("Łukasz Żółć"). `first_name` is always the given name and
`last_name` the family name; only the display order changes.
"""

from __future__ import annotations

# Languages (of ours) that write the family name first.
FAMILY_NAME_FIRST = frozenset({"vi"})


def full_name(first_name: str, last_name: str, language: str) -> str:
    parts = (last_name, first_name) if language in FAMILY_NAME_FIRST else (first_name, last_name)
    return " ".join(p for p in parts if p)
