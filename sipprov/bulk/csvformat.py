"""The CSV format of agents (import and export): columns, cells, line numbers.

Columns are the HTTP API's field names, so a file reads like a list of API bodies:
- `queues` is `support:2;sales`: queue names separated by `;`, each with an optional
  `:penalty` (the membership's own penalty; without it the penalty follows priority);
- booleans are written `true`/`false` (import also takes yes/no, 1/0, on/off);
- an empty cell is "not given": on a new agent the API default applies, on an existing
  one see bulk.py for what it means per column;
- `password` and `sip_password` may be given on import, are never exported;
- a reject file has the same columns plus `error`, which import ignores, so the
  rejected rows can be fixed and imported again as they are.

Files are UTF-8 (a BOM, as Excel writes it, is accepted; UTF-16 with its BOM too),
separated by `,`, `;` or tabs (detected from the header: the separator that names known
columns), quoted as needed (csv module, "excel" dialect); export writes `,` and UTF-8.
The full format is docs/csv.md. Spreadsheet formula injection: every text field
is whitelisted by validation.py; none admits `=`, quotes or `,` together with `(`, so
no exported cell can carry a working formula.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from sipprov.agents import fields as agent_fields
from sipprov.agents.models import Agent, AgentCreate
from sipprov.errors import N_, ValidationError

# The registry's CSV fields in its order (the identity first).
AGENT_COLUMNS: tuple[str, ...] = agent_fields.csv_columns()
SECRET_COLUMNS: tuple[str, ...] = ("password", "sip_password")
# Columns that say how to apply a row rather than what the agent is: `action` (create,
# update, delete; empty: update when the row matches an agent, else create) and `force`,
# which confirms an update that drops data (the API's ?force=true).
CONTROL_COLUMNS: tuple[str, ...] = ("action", "force")
# deactivate / reactivate: an update that also sets `active` (false / true).
ACTIONS: tuple[str, ...] = ("create", "update", "delete", "deactivate", "reactivate")
IMPORT_COLUMNS: tuple[str, ...] = AGENT_COLUMNS + SECRET_COLUMNS
ERROR_COLUMN = "error"
# The credentials file an import writes can be imported back (e.g. into a restored
# database): its web_password is the password column, and the SIP details it repeats
# (username = the extension, realm, server) are accepted and not stored.
COLUMN_ALIASES: dict[str, str] = {"web_password": "password"}
IGNORED_COLUMNS: tuple[str, ...] = ("sip_username", "sip_realm", "sip_server")
# Separators of the files admins produce: Excel writes `;` where `,` is the decimal
# separator (Polish, Vietnamese), "Unicode text" is tab-separated UTF-16.
DELIMITERS: tuple[str, ...] = (",", ";", "\t")
# API-only fields: an import never e-mails (the credentials file is handed out instead).
API_ONLY_FIELDS = frozenset({"send_credentials"})

# Every create field of the API is a column (or deliberately API-only): a field added
# to the API without a column here fails at import time, not silently in a round trip.
assert set(AgentCreate.model_fields) == set(IMPORT_COLUMNS) | API_ONLY_FIELDS, (
    set(AgentCreate.model_fields) ^ (set(IMPORT_COLUMNS) | API_ONLY_FIELDS)
)

QUEUE_SEPARATOR = ";"
PENALTY_SEPARATOR = ":"


@dataclass(frozen=True)
class CsvRow:
    """One record: `line` is the physical line it starts on (the header is line 1)."""

    line: int
    cells: dict[str, str]


@dataclass(frozen=True)
class CsvFile:
    columns: tuple[str, ...]
    rows: list[CsvRow]


# --- cells ---------------------------------------------------------------------------


def format_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def format_queues(queues: Iterable[dict[str, Any]]) -> str:
    """`support:2;sales` from the API's queue list (only an explicit penalty is kept)."""
    parts = []
    for q in queues:
        override = q.get("penalty_override")
        parts.append(q["name"] if override is None else f"{q['name']}{PENALTY_SEPARATOR}{override}")
    return QUEUE_SEPARATOR.join(parts)


def parse_queues(cell: str) -> list[dict[str, str]]:
    """`support:2;sales` -> [{"name": "support", "penalty": "2"}, {"name": "sales"}].

    Values stay strings: the API model validates them (queue name whitelist, penalty
    range) and names the failing item (`queues.0.penalty`).
    """
    out: list[dict[str, str]] = []
    for part in cell.split(QUEUE_SEPARATOR):
        part = part.strip()
        if not part:
            continue
        name, sep, penalty = part.partition(PENALTY_SEPARATOR)
        item = {"name": name.strip()}
        if sep:
            item["penalty"] = penalty.strip()
        out.append(item)
    return out


def agent_to_row(agent: Agent) -> dict[str, str]:
    """An agent as a CSV row (no secret exists on Agent, so none can be written)."""
    data = agent.to_dict()
    row = {name: format_cell(data[name]) for name in AGENT_COLUMNS if name != "queues"}
    row["queues"] = format_queues(agent.queues)
    return row


# --- files ---------------------------------------------------------------------------


def _check_header(header: list[str], allowed: tuple[str, ...]) -> tuple[str, ...]:
    columns = tuple(COLUMN_ALIASES.get(h.strip(), h.strip()) for h in header)
    seen: set[str] = set()
    for col in columns:
        if col in API_ONLY_FIELDS:
            raise ValidationError(
                f"line 1: column {col} is not supported by import (the credentials file is"
                " handed out instead)", col)
        if col not in allowed and col not in (ERROR_COLUMN, *IGNORED_COLUMNS):
            raise ValidationError(
                f"line 1: unknown column {col!r}; the columns are {', '.join(allowed)}"
                " (docs/csv.md)", col or None)
        if col in seen:
            raise ValidationError(f"line 1: column {col} appears twice", col)
        seen.add(col)
    if "login" not in seen and "email" not in seen:
        raise ValidationError("line 1: the header needs a login or an email column", "login")
    return columns


def parse_bool(cell: str, column: str) -> bool:
    """A boolean cell: true/false, yes/no, 1/0, on/off (any case); empty is false."""
    value = cell.strip().lower()
    if value in ("", "false", "no", "0", "off"):
        return False
    if value in ("true", "yes", "1", "on"):
        return True
    error = ValidationError(f"{column}: must be true or false", column)
    error.template = N_("must be true or false")
    raise error


def parse_action(cell: str) -> str:
    """The `action` cell: one of ACTIONS, or "" (decided by the match)."""
    value = cell.strip().lower()
    if value and value not in ACTIONS:
        raise ValidationError(f"action: must be one of {', '.join(ACTIONS)} (or empty)", "action")
    return value


def detect_delimiter(first_line: str, allowed: tuple[str, ...]) -> str:
    """The separator whose split of the header names the most known columns (`,` when
    none does: the error then lists the valid columns)."""
    def known(delimiter: str) -> int:
        cells = next(csv.reader([first_line], delimiter=delimiter), [])
        return sum(1 for c in cells if COLUMN_ALIASES.get(c.strip(), c.strip()) in allowed)
    return max(DELIMITERS, key=lambda d: (known(d), d == ","))


def parse_text(fh: TextIO, allowed: tuple[str, ...] = IMPORT_COLUMNS + CONTROL_COLUMNS) -> CsvFile:
    """Read a whole file (`,`, `;` or tab separated, detected from the header); header
    and structure errors are ValidationErrors with the line."""
    text = fh.read()
    delimiter = detect_delimiter(text.split("\n", 1)[0].rstrip("\r"), allowed)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        header = next(reader, None)
        if header is None:
            raise ValidationError("the file is empty (no header line)", None)
        columns = _check_header(header, allowed)
        rows: list[CsvRow] = []
        start = reader.line_num + 1
        for record in reader:
            if any(cell.strip() for cell in record):
                if len(record) > len(columns):
                    raise ValidationError(
                        f"line {start}: {len(record)} cells but the header has {len(columns)} columns",
                        None)
                cells = {col: (record[i] if i < len(record) else "") for i, col in enumerate(columns)}
                cells.pop(ERROR_COLUMN, None)
                rows.append(CsvRow(start, cells))
            start = reader.line_num + 1
    except csv.Error as exc:
        raise ValidationError(f"line {reader.line_num}: not valid CSV ({exc})", None) from None
    for row in rows:
        for col in IGNORED_COLUMNS:
            row.cells.pop(col, None)
    return CsvFile(tuple(c for c in columns if c not in (ERROR_COLUMN, *IGNORED_COLUMNS)), rows)


def decode(raw: bytes) -> str:
    """UTF-8 with or without a BOM; UTF-16 when it starts with its BOM (Excel's
    "Unicode text"). UnicodeDecodeError otherwise."""
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return raw.decode("utf-16")
    return raw.decode("utf-8-sig")


def read_file(path: Path | str) -> CsvFile:
    try:
        with open(path, "rb") as fh:
            text = decode(fh.read())
        return parse_text(io.StringIO(text, newline=""))
    except UnicodeDecodeError as exc:
        raise ValidationError(
            f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); save it as"
            " \"CSV UTF-8\"", None) from None
    except FileNotFoundError:
        raise ValidationError(f"{path}: no such file", None) from None
    except IsADirectoryError:
        raise ValidationError(f"{path}: is a directory", None) from None


def writer(fh: TextIO, columns: Iterable[str]) -> csv.DictWriter:
    w = csv.DictWriter(fh, fieldnames=list(columns), lineterminator="\n", extrasaction="raise")
    w.writeheader()
    return w


def rows_to_text(columns: Iterable[str], rows: Iterable[dict[str, str]]) -> str:
    buf = io.StringIO()
    w = writer(buf, columns)
    for row in rows:
        w.writerow(row)
    return buf.getvalue()
