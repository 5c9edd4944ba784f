"""The helpdesks supportmem talks to, one module each, and the registry that the rest of the app goes through.

A vendor module holds everything about its helpdesk (signature scheme, payload shapes, reply API) and exports
one ``HELPDESK``. Adding a helpdesk means one module here, its fixtures and its tests, and a line below.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from tickets.helpdesks import chatwoot, freshdesk, front, helpscout, intercom, standard, zammad, zendesk
from tickets.helpdesks.base import (
    CustomerRef,
    Envelope,
    Helpdesk,
    MessageData,
    NormalisedEvent,
    OutboundConfigError,
    OutboundRequest,
    Payload,
    PayloadError,
    SignatureError,
    body_hash,
    html_to_text,
)

HELPDESKS: dict[str, Helpdesk] = {
    module.HELPDESK.kind: module.HELPDESK
    for module in (zendesk, intercom, helpscout, front, freshdesk, standard, chatwoot, zammad)
}

__all__ = [
    "HELPDESKS",
    "CustomerRef",
    "Envelope",
    "Helpdesk",
    "MessageData",
    "NormalisedEvent",
    "OutboundConfigError",
    "OutboundRequest",
    "PayloadError",
    "SignatureError",
    "body_hash",
    "envelope_read",
    "event_parse",
    "helpdesk_get",
    "html_to_text",
    "signature_verify",
]


def helpdesk_get(kind: str) -> Helpdesk:
    return HELPDESKS[kind]


def signature_verify(
    *, kind: str, headers: Mapping[str, str], body: bytes, secret: str, now: float | None = None
) -> None:
    """Raise SignatureError unless ``body`` carries a valid signature for this kind of integration.

    ``headers`` must have lower-case names. ``now`` (epoch seconds) is for tests of published vectors.
    """
    HELPDESKS[kind].verify(headers, body, secret, time.time() if now is None else now)


def envelope_read(*, kind: str, headers: Mapping[str, str], payload: Any, raw_body: bytes) -> Envelope:
    """Event type, delivery key and whether we handle it. A non-object JSON body is an unhandled event."""
    if not isinstance(payload, dict):
        return Envelope("", body_hash(raw_body), False)
    return HELPDESKS[kind].envelope_read(headers, payload, raw_body)


def event_parse(*, kind: str, event_type: str, headers: Mapping[str, str], payload: Payload) -> NormalisedEvent:
    """The normalised event; PayloadError when the payload lacks something its event type needs.

    Any other exception is a bug in our parser, not a bad payload: it propagates, is logged with its
    traceback and the event is retried (a fixed parser then processes it), never dead-lettered as bad input.
    """
    return HELPDESKS[kind].event_parse(event_type, headers, payload)
