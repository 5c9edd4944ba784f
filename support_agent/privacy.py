"""A customer's data rights: export everything held about them, or erase all of it.

Erasure relies on Django's cascade for every row that points at the customer (tickets, messages and
their embeddings, identities, blocks, passages, pending edits, runs and steps, context state, outbound
replies and their attempts, webhook events linked to them) and deletes by hand what a cascade cannot reach:
the simple_history rows of every tracked model (history tables carry no foreign-key constraint), passages
derived from their messages, webhook events whose raw body names them, and django_admin_log entries about
any of their rows (linked to the customer when logged: tickets.AdminLogCustomer). tests/security/
test_erasure_canaries.py scans every text and JSON column of every table afterwards."""

from __future__ import annotations

import functools
import re
from collections import Counter
from typing import Any

from django.apps import apps
from django.contrib.admin.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from django.db import models, transaction
from django.db.models import Q

from memory import kept_vectors, postings
from memory.embeddings import query_cache_clear
from memory.models import ArchivalPassage, MemoryBlock, PendingMemoryEdit
from memory.selectors import text_measures_clear
from support_agent.models import AgentRun, AgentStep, CustomerMerge
from support_agent.tokens import count_tokens
from tickets.models import Customer, OutboundAttempt, OutboundDelivery, Ticket, TicketMessage

# Characters that may sit inside an id or an email address: a match must not continue into them,
# so erasing "zd-1" never touches an event about "zd-10".
_NOT_ID_CHAR = "[^A-Za-z0-9_.@+-]"


def _webhook_event_model() -> type[models.Model] | None:
    try:
        return apps.get_model("tickets", "WebhookEvent")
    except LookupError:
        return None


def _as_rows(queryset: models.QuerySet[Any], exclude: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    fields = [f.attname for f in queryset.model._meta.concrete_fields if f.name not in exclude]
    return list(queryset.values(*fields))


def _identifiers(customer: Customer) -> list[str]:
    """The strings that name this customer in third-party payloads: email and external ids."""
    values = [customer.email, *customer.identities.values_list("external_id", flat=True)]
    return sorted({value for value in values if value and len(value) >= 3})


def _webhook_events_about(customer: Customer) -> models.QuerySet[Any] | None:
    model = _webhook_event_model()
    if model is None:
        return None
    condition = Q(customer=customer)
    for value in _identifiers(customer):
        pattern = f"(^|{_NOT_ID_CHAR}){re.escape(value)}($|{_NOT_ID_CHAR})"
        condition |= Q(organization_id=customer.organization_id, raw_body__iregex=pattern)
    return model._default_manager.filter(condition)


def customer_export(*, customer: Customer) -> dict[str, Any]:
    """Everything held about the customer, as JSON-ready rows (embeddings left out: they are numbers)."""
    block_ids = MemoryBlock.objects.filter(customer=customer).values_list("pk", flat=True)
    history = MemoryBlock.history.model.objects.filter(customer_id=customer.pk)  # type: ignore[attr-defined]
    events = _webhook_events_about(customer)
    return {
        "customer": _as_rows(Customer.objects.filter(pk=customer.pk))[0],
        "identities": _as_rows(customer.identities.all()),
        "tickets": _as_rows(Ticket.objects.filter(customer=customer)),
        "messages": _as_rows(TicketMessage.objects.filter(customer=customer), exclude=("search_vector",)),
        "memory_blocks": _as_rows(MemoryBlock.objects.filter(customer=customer)),
        "memory_block_history": _as_rows(history.order_by("history_date")),
        "pending_memory_edits": _as_rows(PendingMemoryEdit.objects.filter(block_id__in=block_ids)),
        "passages": _as_rows(ArchivalPassage.objects.filter(customer=customer), exclude=("embedding", "search_vector")),
        "agent_runs": _as_rows(AgentRun.objects.filter(customer=customer)),
        "agent_steps": _as_rows(AgentStep.objects.filter(run__customer=customer)),
        "webhook_events": _as_rows(events) if events is not None else [],
    }


def customer_erase(*, customer: Customer) -> dict[str, int]:
    """Delete every row about the customer. Returns how many rows of each kind went, by model label.

    After commit, this process's caches that may hold their text (query vectors, token counts) are emptied.
    """
    counts: Counter[str] = Counter()
    with transaction.atomic():
        customer = Customer.objects.select_for_update().get(pk=customer.pk)
        customer_id = customer.pk
        message_ids = list(TicketMessage.objects.filter(customer=customer).values_list("pk", flat=True))
        events = _webhook_events_about(customer)
        derived = ArchivalPassage.objects.filter(customer__isnull=True, source_message_id__in=message_ids)
        owned = _owned_rows(customer, events, derived)
        counts.update(_deleted(_admin_log_entries(customer, owned)))
        if events is not None:
            counts.update(_deleted(events.exclude(customer=customer)))
        counts.update(_deleted(derived))
        counts.update(_deleted(Customer.objects.filter(pk=customer_id)))
        # A merge undone earlier still keeps this customer's snapshot (contact data, core memory, summary) on the
        # record of the customer it was merged into; the records of merges into this customer went with it.
        counts.update(_deleted(CustomerMerge.objects.filter(source_customer_id=customer_id)))
        # Last: deleting the rows above wrote one more history row each ("-", with the final value).
        counts.update(_history_deleted(customer_id, owned))
        transaction.on_commit(_text_caches_clear)
        transaction.on_commit(functools.partial(postings.kept_forget, customer_id))
        transaction.on_commit(functools.partial(kept_vectors.kept_forget, customer_id))
    return {label: count for label, count in sorted(counts.items()) if count}


def _deleted(queryset: models.QuerySet[Any]) -> dict[str, int]:
    _total, per_model = queryset.delete()
    return {label.lower(): count for label, count in per_model.items()}


def _owned_rows(
    customer: Customer, events: models.QuerySet[Any] | None, derived: models.QuerySet[ArchivalPassage]
) -> dict[type[models.Model], list[Any]]:
    """Primary keys of every row about the customer, by concrete model, read before anything is deleted."""
    querysets: list[models.QuerySet[Any]] = [
        Customer.objects.filter(pk=customer.pk),
        customer.identities.all(),
        Ticket.objects.filter(customer=customer),
        TicketMessage.objects.filter(customer=customer),
        MemoryBlock.objects.filter(customer=customer),
        PendingMemoryEdit.objects.filter(block__customer=customer),
        ArchivalPassage.objects.filter(customer=customer),
        derived,
        AgentRun.objects.filter(customer=customer),
        AgentStep.objects.filter(run__customer=customer),
        OutboundDelivery.objects.filter(message__customer=customer),
        OutboundAttempt.objects.filter(delivery__message__customer=customer),
    ]
    if events is not None:
        querysets.append(events)
    owned: dict[type[models.Model], list[Any]] = {}
    for queryset in querysets:
        owned.setdefault(queryset.model, []).extend(queryset.values_list("pk", flat=True))
    return owned


def _admin_log_entries(customer: Customer, owned: dict[type[models.Model], list[Any]]) -> models.QuerySet[LogEntry]:
    """Entries linked to the customer when they were logged, and any entry about one of their rows (proxy
    models included: the customer memory page logs as CustomerMemory)."""
    condition = Q(customer_link__customer=customer)
    for model, ids in owned.items():
        variants = [m for m in apps.get_models() if m._meta.concrete_model is model]
        content_types = ContentType.objects.get_for_models(*variants, for_concrete_models=False).values()
        condition |= Q(content_type__in=content_types, object_id__in=[str(pk) for pk in ids])
    return LogEntry.objects.filter(condition)


def _history_deleted(customer_id: int, owned: dict[type[models.Model], list[Any]]) -> dict[str, int]:
    """simple_history rows (no foreign key, so no cascade) of any tracked model: by customer, or by the id of
    a row that was theirs."""
    counts: Counter[str] = Counter()
    for history_model in apps.get_models():
        tracked = getattr(history_model, "instance_type", None)  # set on simple_history's historical models
        if tracked is None:
            continue
        names = {field.attname for field in history_model._meta.concrete_fields}
        condition = Q(customer_id=customer_id) if "customer_id" in names else Q(pk__in=[])
        if owned.get(tracked):
            condition |= Q(**{f"{tracked._meta.pk.attname}__in": owned[tracked]})
        counts.update(_deleted(history_model._default_manager.filter(condition)))
    return counts


def _text_caches_clear() -> None:
    """In-process caches keyed by text: search queries (their vectors), token counts and the measures of searched
    messages' texts. Emptied whole: they refill within a few requests, and a key cannot be traced back to a
    customer."""
    query_cache_clear()
    count_tokens.cache_clear()
    text_measures_clear()
