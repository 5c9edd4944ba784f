"""Reads of memory shared by the agent's tools, the admin and the API.

Search is always scoped to one customer (or, for staff, one organisation).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from django.contrib.postgres.search import SearchQuery, SearchRank
from django.db.models import F, QuerySet

from memory.models import ArchivalPassage, MemoryBlock
from tickets.models import Customer, Organization, TicketMessage

T = TypeVar("T")


@dataclass
class SearchPage(Generic[T]):
    results: list[T]
    page: int
    page_size: int
    total: int

    @property
    def has_next(self) -> bool:
        return self.page * self.page_size < self.total


def blocks_for_customer(*, customer: Customer) -> list[MemoryBlock]:
    """The core memory the agent sees for a customer: organisation blocks first, then the customer's."""
    org_blocks = MemoryBlock.objects.filter(organization_id=customer.organization_id, customer__isnull=True)
    own_blocks = MemoryBlock.objects.filter(organization_id=customer.organization_id, customer=customer)
    return list(org_blocks.order_by("label")) + list(own_blocks.order_by("label"))


def block_get(*, customer: Customer, label: str) -> MemoryBlock | None:
    """A block the customer's agent may address by label: the customer's own, else the organisation's."""
    return (
        MemoryBlock.objects.filter(organization_id=customer.organization_id, customer=customer, label=label).first()
        or MemoryBlock.objects.filter(
            organization_id=customer.organization_id, customer__isnull=True, label=label
        ).first()
    )


def passages_for(
    *, organization: Organization, customer: Customer | None, include_invalidated: bool = False
) -> QuerySet[ArchivalPassage]:
    passages = ArchivalPassage.objects.filter(organization=organization)
    if customer is not None:
        passages = passages.filter(customer=customer)
    if not include_invalidated:
        passages = passages.filter(invalidated_at__isnull=True)
    return passages


def passage_search(
    *,
    organization: Organization,
    customer: Customer | None,
    query: str,
    tags: list[str] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    page: int = 1,
    page_size: int = 10,
    include_invalidated: bool = False,
) -> SearchPage[ArchivalPassage]:
    passages = passages_for(organization=organization, customer=customer, include_invalidated=include_invalidated)
    if tags:
        passages = passages.filter(tags__contains=[t.lower() for t in tags])
    if start:
        passages = passages.filter(created_at__gte=start)
    if end:
        passages = passages.filter(created_at__lte=end)
    if query.strip():
        search = SearchQuery(query, config="english", search_type="websearch")
        passages = passages.filter(search_vector=search).annotate(rank=SearchRank(F("search_vector"), search))
        passages = passages.order_by("-rank", "-created_at")
    total = passages.count()
    offset = (max(page, 1) - 1) * page_size
    return SearchPage(list(passages[offset : offset + page_size]), page, page_size, total)


def message_search(
    *,
    customer: Customer,
    query: str,
    start: datetime | None = None,
    end: datetime | None = None,
    page: int = 1,
    page_size: int = 10,
) -> SearchPage[TicketMessage]:
    messages = TicketMessage.objects.filter(customer=customer)
    if start:
        messages = messages.filter(created_at__gte=start)
    if end:
        messages = messages.filter(created_at__lte=end)
    if query.strip():
        search = SearchQuery(query, config="english", search_type="websearch")
        messages = messages.filter(search_vector=search).annotate(rank=SearchRank(F("search_vector"), search))
        messages = messages.order_by("-rank", "-created_at")
    else:
        messages = messages.order_by("-created_at")
    total = messages.count()
    offset = (max(page, 1) - 1) * page_size
    return SearchPage(list(messages[offset : offset + page_size]), page, page_size, total)
