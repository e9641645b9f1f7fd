"""Request bodies that belong to the HTTP API alone (the service layer's inputs are in
sipprov/agents/models.py). Same rules as there: unknown fields refused, input never echoed."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)


class LoginRequest(_Body):
    """POST /api/v1/auth/login: check a user's web login and password."""

    login: str = Field(min_length=1, max_length=256)
    password: str = Field(min_length=1, max_length=1024, repr=False)


class ChangePasswordRequest(_Body):
    """POST /api/v1/auth/change-password: a user changes their own web password."""

    login: str = Field(min_length=1, max_length=256)
    old_password: str = Field(min_length=1, max_length=1024, repr=False)
    new_password: str = Field(min_length=1, max_length=1024, repr=False)
