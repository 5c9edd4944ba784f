"""Full-text search over recall memory ranks the right message first."""

from __future__ import annotations

from django.contrib.postgres.search import SearchQuery, SearchRank
from django.db.models import F

from tickets.models import TicketMessage
from tickets.services import message_ingest


def test_full_text_ranks_the_matching_message_first(actors):
    for body in [
        "Thanks, the invoice looks right now.",
        "The mobile app crashes when I open the camera to scan a receipt.",
        "Please send the invoice again, the PDF was empty.",
        "Can I change the billing email on my invoices?",
    ]:
        message_ingest(customer=actors.customer, body=body, author_role="customer", announce=False)

    query = SearchQuery("app crashing camera", config="english", search_type="websearch")
    ranked = (
        TicketMessage.objects.filter(customer=actors.customer, search_vector=query)
        .annotate(rank=SearchRank(F("search_vector"), query))
        .order_by("-rank")
    )
    assert ranked[0].body.startswith("The mobile app crashes")


def test_search_vector_follows_edits(actors):
    message, _ = message_ingest(customer=actors.customer, body="router firmware", author_role="customer")
    message.body = "modem password reset"
    message.save()
    query = SearchQuery("modem", config="english")
    assert TicketMessage.objects.filter(pk=message.pk, search_vector=query).exists()
