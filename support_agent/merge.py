"""Merging two customers, and undoing a merge. It lives in the agent layer because it moves rows of every layer
(tickets, memory, runs); the lower layers contribute their own parts (``memory.services.blocks_merge``)."""

from __future__ import annotations

from typing import Any

from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import AbstractBaseUser
from django.contrib.contenttypes.models import ContentType
from django.db import models, transaction
from django.utils import timezone

from memory.models import ArchivalPassage, ChangeSource, MemoryBlock, PendingMemoryEdit
from memory.services import Provenance, block_create, block_set_value, blocks_merge, passages_merge
from support_agent.models import AgentContextState, CustomerMemory, CustomerMerge
from tickets.models import Customer

# Relations moved by their own layer's rules, not by the generic move.
_SPECIAL = {
    (MemoryBlock, "customer"),
    (ArchivalPassage, "customer"),
    (PendingMemoryEdit, "customer"),
    (AgentContextState, "customer"),
}


class MergeError(Exception):
    """A merge or undo that cannot be done; the message is fit for staff."""


def _customer_relations() -> list[tuple[type[models.Model], str]]:
    """Every (model, field) that points at a customer and must follow them: a plain foreign key, whatever app
    declares it (so a table added later is moved too). History tables (DO_NOTHING) keep what they recorded."""
    relations = []
    for rel in Customer._meta.get_fields(include_hidden=True):
        if not (rel.auto_created and not rel.concrete and (rel.one_to_many or rel.one_to_one)):
            continue
        model, field = rel.related_model, rel.field.name  # type: ignore[union-attr]
        if not (isinstance(model, type) and issubclass(model, models.Model)) or model._meta.proxy:
            continue
        if rel.on_delete is models.DO_NOTHING or (model, field) in _SPECIAL:  # type: ignore[union-attr]
            continue
        relations.append((model, field))
    return relations


def customer_merge(
    *, source: Customer, into: Customer, user: AbstractBaseUser | None, via: str = "admin"
) -> CustomerMerge:
    """Merge ``source`` into ``into`` (same organisation): identities, tickets, messages, runs, webhook events and
    every other row of the source move; core memory is combined per label within char limits
    (``blocks_merge``); passages move (duplicates superseded). The source customer is deleted and the merge
    recorded as a ``CustomerMerge`` row, which ``customer_merge_undo`` reverses."""
    if source.organization_id != into.organization_id:
        raise MergeError("Both customers must belong to the same organisation.")
    if source.pk == into.pk:
        raise MergeError("A customer cannot be merged into itself.")
    provenance = Provenance(
        source=ChangeSource.STAFF if via == "admin" else ChangeSource.API,
        user=user,
        reason=f"customer {source.pk} merged into customer {into.pk}",
    )
    with transaction.atomic():
        locked = {c.pk: c for c in Customer.objects.select_for_update().filter(pk__in=[source.pk, into.pk])}
        if len(locked) != 2:
            raise MergeError("One of the customers no longer exists.")
        source, into = locked[source.pk], locked[into.pk]
        source_id = source.pk
        state = AgentContextState.objects.filter(customer=source).first()
        snapshot = {
            "name": source.name,
            "email": source.email,
            "metadata": source.metadata,
            "created_at": source.created_at.isoformat(),
            "context_summary": state.summary if state else "",
        }
        moved: dict[str, Any] = {"blocks": blocks_merge(source=source, into=into, provenance=provenance)}
        moved.update(passages_merge(source=source, into=into))
        rows: dict[str, list[int]] = {}
        for model, field in _customer_relations():
            pks = list(model._default_manager.filter(**{field: source}).values_list("pk", flat=True))
            if pks:
                model._default_manager.filter(pk__in=pks).update(**{field: into})
                rows[f"{model._meta.label}.{field}"] = pks
        moved["rows"] = rows
        moved["admin_log_ids"] = _admin_log_move(source_id, into.pk)
        moved["filled"] = _fill_contact(into, source)
        if state is not None:
            state.delete()
        source.delete()
        return CustomerMerge.objects.create(
            organization_id=into.organization_id,
            into=into,
            source_customer_id=source_id,
            source_snapshot=snapshot,
            moved=moved,
            merged_by=user,  # type: ignore[misc]
            via=via,
        )


def _admin_log_move(from_id: int, to_id: int) -> list[int]:
    """Admin log rows about the merged-away customer follow it (erasing the survivor must find them)."""
    types = ContentType.objects.get_for_models(Customer, CustomerMemory, for_concrete_models=False).values()
    entries = LogEntry.objects.filter(content_type__in=types, object_id=str(from_id))
    ids = list(entries.values_list("pk", flat=True))
    LogEntry.objects.filter(pk__in=ids).update(object_id=str(to_id))
    return ids


def _fill_contact(into: Customer, source: Customer) -> dict[str, Any]:
    """The surviving customer keeps its own name and email; blanks are filled from the source, metadata keys it
    lacks are added. Returns what was filled, for the undo."""
    filled: dict[str, Any] = {}
    for field in ("name", "email"):
        if not getattr(into, field) and getattr(source, field):
            setattr(into, field, getattr(source, field))
            filled[field] = getattr(source, field)
    added = {key: value for key, value in (source.metadata or {}).items() if key not in (into.metadata or {})}
    if added:
        into.metadata = {**(into.metadata or {}), **added}
        filled["metadata_keys"] = sorted(added)
    if filled:
        into.save(update_fields=["name", "email", "metadata", "updated_at"])
    return filled


def customer_merge_undo(*, merge: CustomerMerge, user: AbstractBaseUser | None) -> CustomerMerge:
    """Reverse a merge as far as the rows still allow, and record what was restored in ``undo_report``.

    Restored: the source customer (same id, name, email, metadata, context summary); every row the merge moved
    that still belongs to the surviving customer (identities, tickets, messages, runs, webhook events,
    passages, ...), moved back; superseded duplicate passages made current again; passages the merge created
    for block overflow deleted; the source's core memory blocks recreated with their values from before the
    merge (new block ids: their history starts again) and its pending edits moved back; each combined block of
    the surviving customer set back to its value before the merge, unless it changed since (then it is kept
    and listed under ``kept_changed_blocks``); contact fields the merge filled blanked again if unchanged.
    Not restored: anything created after the merge (a new message through a moved identity stays with the
    surviving customer until staff move it).
    """
    provenance = Provenance(
        source=ChangeSource.STAFF, user=user, reason=f"undo of merge {merge.pk} (customer {merge.source_customer_id})"
    )
    with transaction.atomic():
        merge = CustomerMerge.objects.select_for_update().select_related("into").get(pk=merge.pk)
        if merge.undone_at is not None:
            raise MergeError("This merge was already undone.")
        if Customer.objects.filter(pk=merge.source_customer_id).exists():
            raise MergeError("A customer with the merged-away id exists again; nothing was changed.")
        into = Customer.objects.select_for_update().get(pk=merge.into_id)
        snapshot = merge.source_snapshot
        source = Customer.objects.create(
            pk=merge.source_customer_id,
            organization_id=merge.organization_id,
            name=snapshot.get("name", ""),
            email=snapshot.get("email", ""),
            metadata=snapshot.get("metadata", {}),
        )
        Customer.objects.filter(pk=source.pk).update(created_at=snapshot.get("created_at") or source.created_at)
        if snapshot.get("context_summary"):
            AgentContextState.objects.create(customer=source, summary=snapshot["context_summary"])
        report: dict[str, Any] = {"rows": {}}
        for key, pks in merge.moved.get("rows", {}).items():
            label, field = key.rsplit(".", 1)
            model = _model_by_label(label)
            if model is None:
                continue
            report["rows"][key] = model._default_manager.filter(pk__in=pks, **{field: into}).update(**{field: source})
        LogEntry.objects.filter(pk__in=merge.moved.get("admin_log_ids", [])).update(object_id=str(source.pk))
        report["passages"] = _passages_back(merge.moved, into=into, source=source)
        blocks = merge.moved.get("blocks", {})
        history = MemoryBlock.history.model.objects  # type: ignore[attr-defined]
        history.filter(history_id__in=blocks.get("history_ids", []), customer_id=into.pk).update(customer_id=source.pk)
        report.update(_blocks_back(blocks.get("by_label", {}), into=into, source=source, provenance=provenance))
        _contact_back(merge.moved.get("filled", {}), into)
        merge.undone_at, merge.undo_report = timezone.now(), report
        merge.undone_by = user  # type: ignore[assignment]
        merge.save(update_fields=["undone_at", "undone_by", "undo_report"])
    return merge


def _model_by_label(label: str) -> type[models.Model] | None:
    from django.apps import apps

    try:
        return apps.get_model(label)
    except LookupError:
        return None


def _passages_back(moved: dict[str, Any], *, into: Customer, source: Customer) -> int:
    count = ArchivalPassage.objects.filter(pk__in=moved.get("passage_ids", []), customer=into).update(customer=source)
    # Back with their owner, the duplicates the merge superseded are current again (no twin there).
    ArchivalPassage.objects.filter(pk__in=moved.get("duplicate_passage_ids", []), customer=source).update(
        invalidated_at=None, superseded_by=None
    )
    return count


def _blocks_back(blocks: dict[str, Any], *, into: Customer, source: Customer, provenance: Provenance) -> dict[str, Any]:
    kept: list[str] = []
    for label, entry in blocks.items():
        if entry["action"] == "moved":
            MemoryBlock.objects.filter(pk=entry["source_block_id"], customer=into).update(customer=source)
            PendingMemoryEdit.objects.filter(pk__in=entry["pending_edit_ids"]).update(customer=source)
            continue
        restored = block_create(
            organization=into.organization,
            customer=source,
            label=label,
            value=entry["value"],
            description=entry["description"],
            char_limit=entry["char_limit"],
            read_only=entry["read_only"],
            provenance=provenance,
        )
        pending = PendingMemoryEdit.objects.filter(
            pk__in=entry["pending_edit_ids"], status=PendingMemoryEdit.Status.PENDING
        )
        pending.update(block=restored, customer=source)
        if entry.get("overflow_passage_id"):
            ArchivalPassage.objects.filter(pk=entry["overflow_passage_id"], customer=into).delete()
        target = MemoryBlock.objects.filter(pk=entry["into_block_id"]).first()
        if target is None or target.version != entry["into_version_after"]:
            kept.append(label)
        elif target.value != entry["into_value_before"]:
            block_set_value(block=target, value=entry["into_value_before"], provenance=provenance)
            # The version the merge wrote holds the other customer's lines; undone, it would outlive their erasure.
            merged = f"customer {source.pk} merged into customer {into.pk}"
            target.history.filter(history_change_reason=merged).delete()  # type: ignore[attr-defined]
    return {"kept_changed_blocks": kept}


def _contact_back(filled: dict[str, Any], into: Customer) -> None:
    changed = []
    for field in ("name", "email"):
        if field in filled and getattr(into, field) == filled[field]:
            setattr(into, field, "")
            changed.append(field)
    if filled.get("metadata_keys"):
        into.metadata = {k: v for k, v in (into.metadata or {}).items() if k not in filled["metadata_keys"]}
        changed.append("metadata")
    if changed:
        into.save(update_fields=[*changed, "updated_at"])
