"""The supported languages: one list that validation, the API schema, the CLI and the
console all read, so adding a language is adding it here and writing its catalog."""

from __future__ import annotations

from functools import cache
from typing import Literal, get_args

from babel import Locale

# The type of a user's `language` (pydantic models and the OpenAPI enum use it).
# Order is how choosers list them.
Language = Literal["pl", "vi", "en"]
LANGUAGES: tuple[str, ...] = get_args(Language)
# What a user without a language gets when the configuration does not say.
DEFAULT_LANGUAGE = "en"


def is_supported(code: object) -> bool:
    return isinstance(code, str) and code in LANGUAGES


def require_language(code: object, field: str = "language") -> str:
    """The code itself when supported; else ValueError naming the valid ones (callers
    turn it into their own 422 / exit 2 / rejected CSV row)."""
    if not is_supported(code):
        raise ValueError(f"{field} must be one of {', '.join(LANGUAGES)}")
    return str(code)


@cache
def display_name(code: str) -> str:
    """The language's name in itself ("polski" -> "Polski", "Tiếng Việt"), for choosers."""
    name = Locale.parse(code).get_display_name(code) or code
    return name[:1].upper() + name[1:]
