"""A service error's reason in the page's language: SipprovError.template % params
(errors.py, `because`), translated through the catalogs. The console's import preview
and its forms both show reasons this way."""

from __future__ import annotations

from collections.abc import Callable, Mapping

# Parameters of a reason that are catalog messages themselves (validation.Refused).
TRANSLATED_PARAMS = ("what",)


def reason(gettext: Callable[[str], str], template: str,
           params: Mapping[str, object] | None) -> str:
    """`template` % `params` in gettext's language (the English when the translation's
    placeholders do not fit)."""
    values = {k: gettext(v) if k in TRANSLATED_PARAMS and isinstance(v, str) else v
              for k, v in (params or {}).items()}
    text = gettext(template)
    try:
        return text % values if values else text
    except (KeyError, TypeError, ValueError):
        return template % dict(params or {}) if params else template
