"""Signal receivers of the tickets layer: an agent reply on a helpdesk ticket goes back to that helpdesk."""

from __future__ import annotations

from typing import Any

from django.dispatch import receiver

from tickets.models import TicketMessage
from tickets.outbound import outbound_delivery_create
from tickets.signals import message_ingested


@receiver(message_ingested, dispatch_uid="tickets.outbound_on_agent_reply")
def agent_reply_send(sender: Any, message_id: int, author_role: str, **kwargs: Any) -> None:
    """Sent after the reply's transaction commits; the delivery row makes a repeated signal harmless."""
    if author_role != TicketMessage.Role.AGENT:
        return
    message = TicketMessage.objects.select_related("ticket__integration", "customer").filter(pk=message_id).first()
    if message is not None and message.ticket is not None:
        outbound_delivery_create(message=message)
