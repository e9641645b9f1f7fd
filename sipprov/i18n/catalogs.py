"""Loading the gettext catalogs.

The `.po` files are the only thing kept: each is compiled in memory the first time its
language is asked for (Babel's read_po + write_mo, a few milliseconds), so an installed
wheel, a source checkout and a freshly edited catalog all work without a build step and
a stale `.mo` can never be served. Fuzzy entries are left out: an unchecked translation
shows the English text instead.
"""

from __future__ import annotations

import gettext
import io
from functools import cache
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

from sipprov.i18n.languages import LANGUAGES

DOMAIN = "sipprov"
LOCALE_DIR = Path(__file__).resolve().parent.parent / "locale"


def po_path(language: str) -> Path:
    return LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"


@cache
def translations(language: str) -> gettext.NullTranslations:
    """The translations of one supported language (unknown codes: ValueError).

    English has an (empty) catalog too; any message missing from a catalog falls back
    to its English msgid.
    """
    if language not in LANGUAGES:
        raise ValueError(f"unsupported language {language!r}")
    path = po_path(language)
    if not path.exists():
        return gettext.NullTranslations()
    with path.open("rb") as fh:
        catalog = read_po(fh, locale=language, domain=DOMAIN)
    buf = io.BytesIO()
    write_mo(buf, catalog, use_fuzzy=False)
    buf.seek(0)
    return gettext.GNUTranslations(buf)
