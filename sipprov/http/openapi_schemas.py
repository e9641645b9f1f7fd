"""Response schemas the handlers declare, built from the output dataclasses of
sipprov/agents/models.py (referenced with `ref`, resolved by openapi.py) plus the few
envelopes the HTTP layer adds (credentials, the credentials e-mail, pages)."""

from __future__ import annotations

from sipprov.agents.models import AccountType, Agent, Department, Queue, Role, SipCredentials
from sipprov.http.openapi import ref
from sipprov.http.routes import Schema

SIP_CREDENTIALS: Schema = ref(SipCredentials)
AGENT_SCHEMA: Schema = ref(Agent)

CREDENTIALS_SCHEMA: Schema = {
    "type": "object",
    "description": "secrets made by this call; shown once, never returned again",
    "properties": {
        "web_password": {"type": "string", "description": "only when generated"},
        "sip": SIP_CREDENTIALS,
    },
}
CREDENTIALS_EMAIL_SCHEMA: Schema = {
    "type": "object",
    "required": ["sent", "error"],
    "properties": {"sent": {"type": "boolean"}, "error": {"type": ["string", "null"]}},
}
AGENT_CREATED_SCHEMA: Schema = {
    "allOf": [
        AGENT_SCHEMA,
        {
            "type": "object",
            "properties": {
                "credentials": CREDENTIALS_SCHEMA,
                "credentials_email": CREDENTIALS_EMAIL_SCHEMA,
            },
        },
    ]
}
REGISTRATION_SCHEMA: Schema = {
    "type": "object",
    "description": "whether the agent's phone is registered, from Asterisk's events "
                   "(null: sipprov does not watch Asterisk right now, or no SIP account)",
    "required": ["registered", "contacts"],
    "properties": {
        "registered": {"type": "boolean"},
        "contacts": {"type": "array", "items": {
            "type": "object",
            "required": ["contact", "user_agent", "since"],
            "properties": {
                "contact": {"type": "string", "description": "the phone's contact URI"},
                "user_agent": {"type": "string"},
                "since": {"type": "string", "format": "date-time",
                          "description": "first seen registered by sipprov"},
                "expires_at": {"type": ["string", "null"], "format": "date-time"},
            },
        }},
    },
}
AGENT_DETAIL_SCHEMA: Schema = {
    "allOf": [
        AGENT_SCHEMA,
        {"type": "object",
         "properties": {"registration": {"oneOf": [REGISTRATION_SCHEMA, {"type": "null"}]}}},
    ]
}
SIP_SCHEMA: Schema = {"type": "object", "required": ["sip"],
                      "properties": {"sip": SIP_CREDENTIALS,
                                     "credentials_email": CREDENTIALS_EMAIL_SCHEMA}}
WEB_PASSWORD_SCHEMA: Schema = {
    "type": "object",
    "properties": {"web_password": {"type": "string", "description": "only when generated"},
                   "credentials_email": CREDENTIALS_EMAIL_SCHEMA},
}


def page_of(item: Schema) -> Schema:
    return {
        "type": "object",
        "required": ["items", "next"],
        "properties": {
            "items": {"type": "array", "items": item},
            "next": {"type": ["string", "null"], "description": "cursor of the next page"},
        },
    }


def list_of(item: Schema) -> Schema:
    return {"type": "object", "required": ["items"],
            "properties": {"items": {"type": "array", "items": item}}}


AGENT_PAGE_SCHEMA = page_of(AGENT_SCHEMA)
QUEUE_SCHEMA: Schema = ref(Queue)
ROLE_SCHEMA: Schema = ref(Role)
DEPARTMENT_SCHEMA: Schema = ref(Department)
ACCOUNT_TYPE_SCHEMA: Schema = ref(AccountType)
