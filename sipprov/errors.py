"""Errors the service layer raises. The HTTP layer maps each to a status code and the
CLI to a message and exit code, so the same rule gives the same answer everywhere."""

from __future__ import annotations

from typing import Self

from sipprov.db.database import DatabaseUnavailable


def N_(message: str) -> str:
    """Mark a message for the gettext catalogs; it is translated where it is shown."""
    return message


class SipprovError(Exception):
    """Base class: `code` is a stable machine-readable word, `field` names the input.

    `template` and `params`, when set, are the reason alone (without the field) as a
    catalog message with named placeholders, `template % params` being the English: the
    console translates it (docs/i18n.md); the API and CLI show `message`, in English.
    """

    code = "error"
    status = 400
    template: str | None = None
    params: dict[str, object] | None = None

    def __init__(self, message: str, field: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        if code:
            self.code = code

    @classmethod
    def because(cls, field: str | None, template: str, /, code: str | None = None,
                **params: object) -> Self:
        """The error whose reason is the catalog message `template` % `params`, the
        English `message` being "field: reason"."""
        reason = template % params if params else template
        error = cls(f"{field}: {reason}" if field else reason, field, code)
        error.template, error.params = template, params or None
        return error

    def extra(self) -> dict[str, object]:
        """More keys of the error body (none by default)."""
        return {}

    def to_dict(self) -> dict[str, object]:
        return {"code": self.code, "message": self.message, "field": self.field, **self.extra()}


class ValidationError(SipprovError):
    """Input refused by a rule (HTTP 422)."""

    code = "validation_error"
    status = 422


class ConflictError(SipprovError):
    """Taken login/e-mail/extension, licence limit, pool exhausted (HTTP 409)."""

    code = "conflict"
    status = 409


class ConfirmationRequired(ConflictError):
    """A change that would drop data the caller did not name (memberships, an extension,
    a department's users): refused until confirmed (`?force=true`, `--force`, the CSV
    `force` column). `lost` says what would go: counts and names (HTTP 409)."""

    code = "confirmation_required"

    def __init__(self, message: str, field: str | None, lost: dict[str, object]):
        super().__init__(f"{message}; confirm with force=true", field)
        self.what = message
        self.lost = lost

    def confirm_with(self, how: str) -> str:
        """The message for a surface whose confirmation is spelled `how` (`--force`)."""
        return f"{self.what}; confirm with {how}"

    def extra(self) -> dict[str, object]:
        return {"lost": self.lost}


class NotFoundError(SipprovError):
    code = "not_found"
    status = 404


class AuthError(SipprovError):
    code = "unauthorized"
    status = 401


class ForbiddenError(SipprovError):
    code = "forbidden"
    status = 403


class RateLimitedError(SipprovError):
    code = "rate_limited"
    status = 429

    def __init__(self, message: str, retry_after: float, field: str | None = None):
        super().__init__(message, field)
        self.retry_after = retry_after


class PayloadTooLargeError(SipprovError):
    """An upload over its size limit (HTTP 413)."""

    code = "payload_too_large"
    status = 413


class UnsupportedMediaError(SipprovError):
    """An upload of a type that is not accepted (HTTP 415)."""

    code = "unsupported_media_type"
    status = 415


__all__ = [
    "N_",
    "SipprovError",
    "ValidationError",
    "ConflictError",
    "ConfirmationRequired",
    "NotFoundError",
    "AuthError",
    "ForbiddenError",
    "RateLimitedError",
    "PayloadTooLargeError",
    "UnsupportedMediaError",
    "DatabaseUnavailable",
]
