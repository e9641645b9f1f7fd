"""The gettext catalogs and language helpers: every catalog is complete and matches the
sources (a message added to a template or module without a translation fails here),
placeholders survive translation, negotiation follows choice > Accept-Language >
default, and dates/numbers follow the locale."""

from __future__ import annotations

from datetime import UTC, datetime

import jinja2
import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from sipprov import i18n
from sipprov.i18n.catalogs import LOCALE_DIR, po_path

ROOT = LOCALE_DIR.parents[1]
TRANSLATED = [lang for lang in i18n.LANGUAGES if lang != "en"]


def catalog(language: str):
    with po_path(language).open("rb") as fh:
        return read_po(fh, locale=language)


def source_messages() -> set[str]:
    """Every msgid the sources mark for translation, extracted as `pybabel extract` does."""
    with (ROOT / "babel.cfg").open() as fh:
        method_map, options_map = parse_mapping_cfg(fh)
    found: set[str] = set()
    for _file, _line, message, _comments, _context in extract_from_dir(
            str(ROOT), method_map, options_map):
        found.add(message if isinstance(message, str) else message[0])
    return found


@pytest.mark.parametrize("language", TRANSLATED)
def test_catalog_is_complete(language: str) -> None:
    cat = catalog(language)
    messages = [m for m in cat if m.id]
    assert messages, "empty catalog"
    untranslated = [m.id for m in messages
                    if not (all(m.string) if isinstance(m.string, tuple) else m.string)]
    fuzzy = [m.id for m in messages if m.fuzzy]
    assert untranslated == [], f"untranslated in {language}: {untranslated}"
    assert fuzzy == [], f"fuzzy in {language}: {fuzzy}"
    # Babel's own checks: python-format placeholders, plural forms.
    problems = [(m.id, [str(e) for e in errors]) for m, errors in cat.check()]
    assert problems == []


@pytest.mark.parametrize("language", i18n.LANGUAGES)
def test_catalog_matches_the_sources(language: str) -> None:
    """Run `pybabel extract` + `update` (docs/i18n.md) when this fails."""
    wanted = source_messages()
    have = {m.id if isinstance(m.id, str) else m.id[0] for m in catalog(language) if m.id}
    assert sorted(wanted - have) == [], "messages missing from the catalog"
    assert sorted(have - wanted) == [], "catalog has messages no source uses"


def test_translations_are_served() -> None:
    assert i18n.translations("pl").gettext("Your contact-centre account") == \
        "Twoje konto w centrum kontaktowym"
    assert i18n.translations("vi").gettext("Your contact-centre account") == \
        "Tài khoản trung tâm liên lạc của bạn"
    assert i18n.translations("en").gettext("Your contact-centre account") == \
        "Your contact-centre account"
    # Unknown message: the English source text.
    assert i18n.translations("pl").gettext("no such message") == "no such message"
    with pytest.raises(ValueError):
        i18n.translations("de")


def test_languages_and_names() -> None:
    assert i18n.LANGUAGES == ("pl", "vi", "en")
    assert [i18n.display_name(x) for x in i18n.LANGUAGES] == ["Polski", "Tiếng Việt", "English"]
    assert i18n.require_language("vi") == "vi"
    for bad in ("de", "PL", "", None, 1):
        assert not i18n.is_supported(bad)
        with pytest.raises(ValueError, match="language must be one of pl, vi, en"):
            i18n.require_language(bad)


@pytest.mark.parametrize("choice, header, default, expected", [
    ("vi", "pl-PL,pl;q=0.9", "en", "vi"),             # the user's own choice wins
    (None, "pl-PL,pl;q=0.9,en;q=0.8", "en", "pl"),    # then the browser's
    (None, "de-DE,de;q=0.9,vi;q=0.5,en;q=0.4", "pl", "vi"),
    (None, "en;q=0.2, vi;q=0.8", "pl", "vi"),         # by weight, not order
    (None, "vi;q=0, en", "pl", "en"),                 # q=0 is a refusal
    (None, "de, fr;q=0.5, *;q=0.1", "pl", "pl"),      # nothing we speak: the default
    (None, None, "vi", "vi"),
    ("xx", "garbage;;q=abc,,", "bogus", "en"),        # nothing usable: English
    (None, "VI-vn", "en", "vi"),
])
def test_negotiate(choice, header, default, expected) -> None:
    assert i18n.negotiate(choice, header, default) == expected


def test_parse_accept_language() -> None:
    assert i18n.parse_accept_language("da, en-gb;q=0.8, en;q=0.7") == ["da", "en-gb", "en"]
    assert i18n.parse_accept_language("") == []


def test_locale_formatting() -> None:
    moment = datetime(2026, 3, 12, 14, 5, 0, tzinfo=UTC)
    assert i18n.format_date(moment, "pl") == "12 mar 2026"
    assert "thg 3" in i18n.format_date(moment, "vi")
    assert i18n.format_date(moment, "en") == "Mar 12, 2026"
    assert "14:05" in i18n.format_datetime(moment, "pl")
    assert i18n.format_number(10000, "pl") == "10\xa0000"
    assert i18n.format_number(10000, "vi") == "10.000"
    assert i18n.format_number(10000, "en") == "10,000"
    assert i18n.format_decimal(1234.5, "pl") == "1\xa0234,5"


def test_templates_render_per_language_and_escape() -> None:
    env = i18n.jinja_environment(jinja2.DictLoader({
        "t.html": '<p>{{ _("Hello %(first_name)s,", first_name=name) }}</p>'
                  '<p>{% trans %}Your contact-centre account{% endtrans %}</p>'
                  "<p>{{ format_number(n) }}</p>",
    }))
    t = env.get_template("t.html")
    pl = t.render(**i18n.gettext_context("pl"), name="<b>Łukasz</b>", n=1500)
    assert "Dzień dobry, &lt;b&gt;Łukasz&lt;/b&gt;!" in pl
    assert "Twoje konto w centrum kontaktowym" in pl
    assert "1\xa0500" in pl
    vi = t.render(**i18n.gettext_context("vi"), name="Ngọc", n=15000)
    assert "Xin chào Ngọc," in vi and "15.000" in vi
    # One environment, no state kept between renders.
    assert "Hello Ngọc," in t.render(**i18n.gettext_context("en"), name="Ngọc", n=1)


def test_full_name_order_follows_the_language() -> None:
    assert i18n.full_name("Bích Ngọc", "Trần Thị", "vi") == "Trần Thị Bích Ngọc"
    assert i18n.full_name("Łukasz", "Żółć", "pl") == "Łukasz Żółć"
    assert i18n.full_name("Mary", "Smith", "en") == "Mary Smith"


def test_datetime_in_a_named_time_zone() -> None:
    moment = datetime(2026, 3, 12, 14, 5, 0, tzinfo=UTC)
    assert "15:05" in i18n.format_datetime(moment, "pl", tz="Europe/Warsaw")
    assert "21:05" in i18n.format_datetime(moment, "vi", tz="Asia/Ho_Chi_Minh")
