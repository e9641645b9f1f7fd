"""How an apply can fail; each kind decides what the applier's loop does next."""

from __future__ import annotations


class ApplyError(Exception):
    """An apply did not complete; the change stays pending."""


class Unavailable(ApplyError):
    """Asterisk (AMI) or PostgreSQL cannot be reached: retry with backoff."""


class NotVerified(ApplyError):
    """Reloaded, but Asterisk does not show what was rendered (or could not be asked):
    retried with backoff; a retry without new changes only verifies again (cheap)."""


class Rejected(ApplyError):
    """Asterisk refused the reload, or the render refused a value: recorded, retried on
    the next change or after a while (a retry writes and reloads again)."""
