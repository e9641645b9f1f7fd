"""Dates and numbers as a reader of the language expects them (Babel's CLDR data):
`12 mar 2026, 14:05:00` in Polish, `14:05:00 12 thg 3, 2026` in Vietnamese."""

from __future__ import annotations

from datetime import date, datetime, tzinfo
from decimal import Decimal

from babel import dates, numbers


def format_datetime(value: datetime, language: str, format: str = "medium",
                    tz: tzinfo | str | None = None) -> str:
    """A timestamp in the language's style; `tz` (a tzinfo or a name such as
    "Europe/Warsaw") converts first (default: as given)."""
    zone = dates.get_timezone(tz) if isinstance(tz, str) else tz
    return dates.format_datetime(value, format=format, tzinfo=zone, locale=language)


def format_date(value: date | datetime, language: str, format: str = "medium") -> str:
    return dates.format_date(value, format=format, locale=language)


def format_number(value: int | float | Decimal, language: str) -> str:
    """An integer or plain number with the language's grouping (`10 000` in pl/vi)."""
    return numbers.format_decimal(value, locale=language)


def format_decimal(value: int | float | Decimal, language: str, format: str | None = None) -> str:
    return numbers.format_decimal(value, format=format, locale=language)
