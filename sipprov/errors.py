"""Errors the service layer raises. The HTTP layer maps each to a status code and the
CLI to a message and exit code, so the same rule gives the same answer everywhere."""

from __future__ import annotations

from sipprov.db.database import DatabaseUnavailable


class SipprovError(Exception):
    """Base class: `code` is a stable machine-readable word, `field` names the input."""

    code = "error"
    status = 400

    def __init__(self, message: str, field: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        if code:
            self.code = code

    def to_dict(self) -> dict[str, object]:
        return {"code": self.code, "message": self.message, "field": self.field}


class ValidationError(SipprovError):
    """Input refused by a rule (HTTP 422)."""

    code = "validation_error"
    status = 422


class ConflictError(SipprovError):
    """Taken login/e-mail/extension, licence limit, pool exhausted (HTTP 409)."""

    code = "conflict"
    status = 409


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


__all__ = [
    "SipprovError",
    "ValidationError",
    "ConflictError",
    "NotFoundError",
    "AuthError",
    "ForbiddenError",
    "RateLimitedError",
    "DatabaseUnavailable",
]
