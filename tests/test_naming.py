"""Default logins, caller id names, chat names and gravatar URLs (pure, fast)."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipprov.agents import naming, validation


@pytest.mark.parametrize(
    ("first", "last", "login"),
    [
        ("Jan", "Kowalski", "jan.kowalski"),
        ("Łukasz", "Żółć", "lukasz.zolc"),  # the brief's example: ł is not folded by NFKD
        ("Zażółć", "Gęślą Jaźń", "zazolc.gesla-jazn"),
        ("ŁUKASZ", "ŻÓŁĆ", "lukasz.zolc"),
        ("Nguyễn Thị", "Đặng", "nguyen-thi.dang"),  # Vietnamese: stacked marks, đ/Đ
        ("Trần", "Ưng Ơn", "tran.ung-on"),  # horn letters
        ("Jürgen", "Großmann", "jurgen.grossmann"),  # plain folding: ü -> u, ß -> ss
        ("Ägidius", "Öztürk", "agidius.ozturk"),
        ("François", "Lœuf-Cœur", "francois.loeuf-coeur"),  # œ -> oe
        ("Æsa", "Dæhlie", "aesa.daehlie"),
        ("Søren", "Kierkegaård", "soren.kierkegaard"),
        ("Þóra", "Ðórsdóttir", "thora.dorsdottir"),
        ("Anne-Marie", "O'Neil", "anne-marie.oneil"),  # the brief's example
        ("Seán", "O’Brien", "sean.obrien"),  # typographic apostrophe
        ("María José", "de la Cruz", "maria-jose.de-la-cruz"),  # spaces -> hyphen
        ("J.", "Smith", "j.smith"),
        ("Mary - Ann", "Lee", "mary-ann.lee"),
    ],
)
def test_derive_login(first: str, last: str, login: str) -> None:
    assert naming.derive_login(first, last) == login
    assert validation.login(login) == login


def test_fold_ascii_polish_alphabet() -> None:
    assert naming.fold_ascii("ĄĆĘŁŃÓŚŹŻ ąćęłńóśźż") == "ACELNOSZZ acelnoszz"


def test_names_without_latin_letters_need_an_explicit_login() -> None:
    with pytest.raises(validation.Refused) as exc:
        naming.derive_login("Иван", "Петров")
    assert exc.value.field == "login"
    assert "explicitly" in exc.value.message


def test_long_names_leave_room_for_a_suffix() -> None:
    base = naming.derive_login("A" * 40, "B" * 40)
    assert len(base) <= validation.LOGIN_MAX - naming.SUFFIX_ROOM
    assert validation.login(naming.with_suffix(base, 99999))
    cut = naming.derive_login("Jan", "x" * 54 + "-yy")  # cut right after a hyphen
    assert not cut.endswith(("-", "."))


def test_first_free_login_is_the_lowest_free_suffix() -> None:
    assert naming.first_free_login("jan.kowalski", set()) == "jan.kowalski"
    assert naming.first_free_login("jan.kowalski", {"jan.kowalski"}) == "jan.kowalski2"
    taken = {"jan.kowalski", "jan.kowalski2", "jan.kowalski4"}
    assert naming.first_free_login("jan.kowalski", taken) == "jan.kowalski3"


@pytest.mark.parametrize(
    ("first", "last", "caller_id"),
    [
        ("Jan", "Kowalski", "j.kowalski"),
        ("Łukasz", "Żółć", "l.zolc"),
        ("Anne-Marie", "O'Neil", "a.oneil"),
        ("Émile", "de la Tour", "e.de-la-tour"),
        ("Иван", "Smith", "smith"),
        ("Иван", "Петров", ""),  # the service falls back to the login
    ],
)
def test_default_caller_id_name_is_ascii(first: str, last: str, caller_id: str) -> None:
    got = naming.default_caller_id_name(first, last)
    assert got == caller_id
    if got:
        assert validation.caller_id_name(got) == got


def test_default_chat_name_keeps_the_name() -> None:
    assert naming.default_chat_name("Łukasz", "Żółć") == "Łukasz Żółć"


def test_gravatar_url() -> None:
    url = naming.gravatar_url("  Jan.Kowalski@Example.COM ")
    digest = hashlib.sha256(b"jan.kowalski@example.com").hexdigest()
    assert url == f"https://www.gravatar.com/avatar/{digest}?s=80&d=identicon"


names = st.text(
    alphabet=st.characters(categories=["L", "M"], include_characters=" -'’."), min_size=1, max_size=64
)


@settings(max_examples=300, deadline=None)
@given(first=names, last=names)
def test_derived_values_always_pass_the_whitelists(first: str, last: str) -> None:
    """Whatever a person's name, what we derive from it is safe for Asterisk config."""
    try:
        login = naming.derive_login(first, last)
    except validation.Refused:
        pass
    else:
        assert validation.login(login) == login
    caller_id = naming.default_caller_id_name(first, last)
    if caller_id:
        assert validation.caller_id_name(caller_id) == caller_id
        assert caller_id.isascii()
