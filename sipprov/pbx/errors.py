"""The one error the development PBX raises."""

from __future__ import annotations


class PbxError(RuntimeError):
    """The development PBX could not be built, started or reached; says why."""
