"""A small, strict parser of Asterisk's config syntax, for tests.

It reads a file the way Asterisk's config.c does (sections, `key = value`,
`key => value`, `;` comments and `;-- --;` block comments, `\\;` escapes, `#include` /
`#tryinclude` / `#exec` directives, `[name](options)` headers), so a test can prove
that generated output means exactly what was intended: which sections exist, which
keys they hold, and that no directive or stray section slipped in.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class ConfSyntaxError(ValueError):
    pass


@dataclass
class Section:
    name: str
    options: str = ""  # the "(!)" / "(+)" / "(template)" part, without parentheses
    items: list[tuple[str, str, str]] = field(default_factory=list)  # (key, "=" or "=>", value)

    def get(self, key: str) -> list[str]:
        return [v for k, _, v in self.items if k == key]

    def one(self, key: str) -> str:
        values = self.get(key)
        if len(values) != 1:
            raise KeyError(f"[{self.name}] has {len(values)} values for {key!r}")
        return values[0]

    def keys(self) -> list[str]:
        return [k for k, _, _ in self.items]


@dataclass
class ConfFile:
    sections: list[Section]
    directives: list[str]  # "#include x", "#tryinclude y", "#exec z" lines
    preamble: list[tuple[str, str, str]]  # items before the first section

    def names(self) -> list[str]:
        return [s.name for s in self.sections]

    def by_name(self, name: str) -> list[Section]:
        return [s for s in self.sections if s.name == name]


# What Asterisk's ast_strip() strips (ast_skip_blanks/ast_trim_blanks in strings.h):
# every byte below 33, i.e. space and the ASCII control characters. Python's str.strip()
# would also strip Unicode spaces (U+00A0, U+3000, U+2028, ...), which Asterisk keeps as
# part of the value.
_C_SPACE = "".join(chr(c) for c in range(33))


def _strip_comments(line: str, in_block: bool) -> tuple[str, bool]:
    """Remove `;` comments and `;-- --;` block comments; keep `\\;` as a literal `;`."""
    out = []
    i = 0
    while i < len(line):
        if in_block:
            end = line.find("--;", i)
            if end < 0:
                return "".join(out), True
            i = end + 3
            in_block = False
            continue
        ch = line[i]
        if ch == "\\" and i + 1 < len(line) and line[i + 1] == ";":
            out.append(";")
            i += 2
            continue
        if ch == ";":
            if line.startswith(";--", i):
                in_block = True
                i += 3
                continue
            break
        out.append(ch)
        i += 1
    return "".join(out), in_block


def parse(text: str) -> ConfFile:
    sections: list[Section] = []
    directives: list[str] = []
    preamble: list[tuple[str, str, str]] = []
    in_block = False
    # Asterisk splits on \n (a \r is stripped as whitespace): do the same, and refuse
    # any other line separator so a test notices it.
    for lineno, raw in enumerate(text.split("\n"), 1):
        line, in_block = _strip_comments(raw, in_block)
        line = line.strip(_C_SPACE)  # as ast_strip()
        if not line:
            continue
        if line.startswith("#"):
            directives.append(line)
            continue
        if line.startswith("["):
            end = line.find("]")
            if end < 0:
                raise ConfSyntaxError(f"line {lineno}: unterminated section header")
            name = line[1:end]
            rest = line[end + 1 :].strip(_C_SPACE)
            options = ""
            if rest:
                if not (rest.startswith("(") and rest.endswith(")")):
                    raise ConfSyntaxError(f"line {lineno}: junk after section header")
                options = rest[1:-1]
            sections.append(Section(name, options))
            continue
        eq = line.find("=")
        if eq < 0:
            raise ConfSyntaxError(f"line {lineno}: no '=' in {line!r}")
        key = line[:eq].strip(_C_SPACE)
        op = "="
        value = line[eq + 1 :]
        if value.startswith(">"):
            op = "=>"
            value = value[1:]
        value = value.strip(_C_SPACE)
        if not key:
            raise ConfSyntaxError(f"line {lineno}: empty key")
        (sections[-1].items if sections else preamble).append((key, op, value))
    if in_block:
        raise ConfSyntaxError("unterminated block comment")
    return ConfFile(sections, directives, preamble)


def parse_bytes(data: bytes) -> ConfFile:
    return parse(data.decode("utf-8"))
