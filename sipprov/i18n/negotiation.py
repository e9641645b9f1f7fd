"""Which language to speak to a person: their own choice, else what their browser asks
for (Accept-Language), else the configured default."""

from __future__ import annotations

from sipprov.i18n.languages import DEFAULT_LANGUAGE, LANGUAGES


def parse_accept_language(header: str | None) -> list[str]:
    """Language tags of an Accept-Language header, most wanted first (RFC 9110 q-values;
    q=0 means "not this one"; malformed parts are skipped, never an error)."""
    if not header:
        return []
    weighted: list[tuple[float, int, str]] = []
    for index, part in enumerate(header.split(",")):
        tag, _, params = part.strip().partition(";")
        tag = tag.strip().lower()
        if not tag or len(tag) > 35:
            continue
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = -1.0
        if 0 < q <= 1:
            weighted.append((-q, index, tag))
    return [tag for _, _, tag in sorted(weighted)]


def _supported(tag: str) -> str | None:
    """`pl-PL` -> `pl`; `*` and unknown tags -> None."""
    primary = tag.replace("_", "-").split("-", 1)[0]
    return primary if primary in LANGUAGES else None


def negotiate(choice: str | None = None, accept_language: str | None = None,
              default: str | None = None) -> str:
    """The language to use: `choice` (the user's) when supported, else the first supported
    language of the Accept-Language header, else `default`, else English."""
    if choice in LANGUAGES:
        return choice  # type: ignore[return-value]
    for tag in parse_accept_language(accept_language):
        found = _supported(tag)
        if found:
            return found
    if default in LANGUAGES:
        return default  # type: ignore[return-value]
    return DEFAULT_LANGUAGE
