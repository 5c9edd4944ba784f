"""Writes to memory. Every change is atomic, versioned and records its provenance."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from memory.models import (
    ArchivalPassage,
    BlockTemplate,
    ChangeSource,
    MemoryBlock,
    PendingMemoryEdit,
    SentenceEmbedding,
    content_hash,
)
from memory.signals_out import passage_saved
from tickets.models import Customer, Organization

# Blocks every customer starts with, and every organisation. (label, description, limit)
DEFAULT_CUSTOMER_BLOCKS: list[tuple[str, str, int]] = [
    ("customer", "Who the customer is: name, company, plan, products they use, how they contact us.", 2000),
    ("preferences", "How the customer likes to be helped: language, tone, channel, times, do and don't.", 1500),
    ("open_issues", "Problems still open for this customer and what was already tried.", 2500),
]
DEFAULT_ORGANIZATION_BLOCKS: list[tuple[str, str, int]] = [
    ("persona", "Who you are and how you speak to customers.", 2000),
    ("policies", "Support policies every answer must respect (refunds, escalation, promises).", 3000),
]


class MemoryEditError(Exception):
    """An edit that cannot be applied; the message is fit to show to the model or to staff."""


class BlockReadOnly(MemoryEditError):
    pass


class VersionConflict(MemoryEditError):
    def __init__(self, current_version: int) -> None:
        super().__init__(f"The block changed since version you read; it is now at version {current_version}.")
        self.current_version = current_version


@dataclass(frozen=True)
class Provenance:
    """Who makes a change and why. Memory knows agent runs only by these ids."""

    source: str = ChangeSource.SYSTEM
    user: AbstractBaseUser | None = None
    agent_run_id: int | None = None
    agent_step_id: int | None = None
    prompting_message_id: int | None = None
    reason: str = ""

    def fields(self) -> dict[str, Any]:
        return {
            "change_source": self.source,
            "agent_run_id": self.agent_run_id,
            "agent_step_id": self.agent_step_id,
            "prompting_message_id": self.prompting_message_id,
        }


@dataclass
class EditOutcome:
    """What an agent edit did: applied now, or queued for review."""

    block: MemoryBlock
    applied: bool
    pending: PendingMemoryEdit | None = None
    warnings: list[str] = field(default_factory=list)


def blocks_ensure(*, customer: Customer) -> list[MemoryBlock]:
    """Create the default blocks a customer and its organisation lack; return all of them."""
    organization = customer.organization
    for label, description, limit in DEFAULT_ORGANIZATION_BLOCKS:
        _block_get_or_create(
            organization=organization, customer=None, label=label, description=description, limit=limit
        )
    for label, description, limit in DEFAULT_CUSTOMER_BLOCKS:
        _block_get_or_create(
            organization=organization, customer=customer, label=label, description=description, limit=limit
        )
    for template in BlockTemplate.objects.filter(organization=organization):
        _block_get_or_create(
            organization=organization,
            customer=customer,
            label=template.label,
            description=template.description,
            limit=template.char_limit,
            value=template.value,
            read_only=template.read_only,
            reason=f"from the organisation's template {template.label!r}",
        )
    return list(
        MemoryBlock.objects.filter(organization=organization, customer__in=[customer]).order_by("label")
    ) + list(MemoryBlock.objects.filter(organization=organization, customer__isnull=True).order_by("label"))


def _block_get_or_create(
    *,
    organization: Organization,
    customer: Customer | None,
    label: str,
    description: str,
    limit: int,
    value: str = "",
    read_only: bool = False,
    reason: str = "default block created",
) -> MemoryBlock:
    existing = MemoryBlock.objects.filter(organization=organization, customer=customer, label=label).first()
    if existing is not None:
        return existing
    try:
        with transaction.atomic():
            block = MemoryBlock(
                organization=organization,
                customer=customer,
                label=label,
                description=description,
                char_limit=limit,
                value=value,
                read_only=read_only,
            )
            block._provenance = {**Provenance().fields(), "reason": reason}  # type: ignore[attr-defined]
            block.save()
            return block
    except IntegrityError:
        return MemoryBlock.objects.get(organization=organization, customer=customer, label=label)


def block_create(
    *,
    organization: Organization,
    customer: Customer | None,
    label: str,
    value: str = "",
    description: str = "",
    char_limit: int = 2000,
    read_only: bool = False,
    provenance: Provenance,
) -> MemoryBlock:
    if MemoryBlock.objects.filter(organization=organization, customer=customer, label=label).exists():
        raise MemoryEditError(f"A block labelled {label!r} already exists.")
    block = MemoryBlock(
        organization=organization,
        customer=customer,
        label=label,
        value=value,
        description=description,
        char_limit=char_limit,
        read_only=read_only,
    )
    _save_with_provenance(block, provenance)
    return block


def block_delete(*, block: MemoryBlock, provenance: Provenance) -> None:
    """Forget a block. Its history keeps every version and a deletion record saying who removed it and why."""
    with transaction.atomic():
        current = _locked(block)
        current._provenance = {**provenance.fields(), "reason": provenance.reason}  # type: ignore[attr-defined]
        if provenance.user is not None:
            current._history_user = provenance.user  # type: ignore[attr-defined]
        current.delete()


def _save_with_provenance(block: MemoryBlock, provenance: Provenance) -> None:
    block._provenance = {**provenance.fields(), "reason": provenance.reason}  # type: ignore[attr-defined]
    if provenance.user is not None:
        block._history_user = provenance.user  # type: ignore[attr-defined]
    block.save()


def _locked(block: MemoryBlock) -> MemoryBlock:
    return MemoryBlock.objects.select_for_update().get(pk=block.pk)


def block_set_value(
    *,
    block: MemoryBlock,
    value: str,
    provenance: Provenance,
    expected_version: int | None = None,
) -> MemoryBlock:
    """Replace a block's whole value (staff and API edits). Optimistic concurrency via expected_version."""
    with transaction.atomic():
        current = _locked(block)
        if expected_version is not None and current.version != expected_version:
            raise VersionConflict(current.version)
        if provenance.source == ChangeSource.AGENT and current.read_only:
            raise BlockReadOnly(f"Block {current.label!r} is pinned (read-only); it cannot be edited by the agent.")
        if current.value == value:
            return current
        current.value = value
        current.version += 1
        _save_with_provenance(current, provenance)
    return current


def apply_append(value: str, content: str) -> str:
    content = content.strip()
    if not content:
        raise MemoryEditError("Nothing to append: content is empty.")
    return f"{value.rstrip()}\n{content}" if value.strip() else content


def apply_replace(value: str, old_content: str, new_content: str) -> str:
    if not old_content:
        raise MemoryEditError("old_content is empty; quote the exact text to replace.")
    count = value.count(old_content)
    if count == 0:
        raise MemoryEditError("old_content was not found in the block; quote the block's text exactly.")
    if count > 1:
        raise MemoryEditError(
            f"old_content appears {count} times in the block; quote a longer passage so it matches exactly once."
        )
    return value.replace(old_content, new_content, 1)


def block_agent_edit(
    *,
    block: MemoryBlock,
    operation: str,
    new_content: str,
    old_content: str = "",
    provenance: Provenance,
) -> EditOutcome:
    """An edit by the agent: checked, then applied or queued for staff review per the organisation."""
    with transaction.atomic():
        current = _locked(block)
        if current.read_only:
            raise BlockReadOnly(f"Block {current.label!r} is pinned (read-only); it cannot be edited by the agent.")
        if operation == PendingMemoryEdit.Operation.APPEND:
            proposed = apply_append(current.value, new_content)
        elif operation == PendingMemoryEdit.Operation.REPLACE:
            proposed = apply_replace(current.value, old_content, new_content)
        else:
            raise MemoryEditError(f"Unknown operation {operation!r}.")
        warnings = []
        if len(proposed) > current.char_limit:
            warnings.append(
                f"Block {current.label!r} is now {len(proposed)}/{current.char_limit} characters, over its limit: "
                "condense it (core_memory_replace) or move details to archival memory."
            )
        if current.organization.memory_edits_need_approval:
            pending = PendingMemoryEdit.objects.create(
                organization_id=current.organization_id,
                customer_id=current.customer_id,
                block=current,
                operation=operation,
                old_content=old_content,
                new_content=new_content,
                base_version=current.version,
                base_value=current.value,
                proposed_value=proposed,
                reason=provenance.reason,
                **provenance.fields(),
            )
            return EditOutcome(block=current, applied=False, pending=pending, warnings=warnings)
        current.value = proposed
        current.version += 1
        _save_with_provenance(current, provenance)
        return EditOutcome(block=current, applied=True, warnings=warnings)


def pending_edit_approve(*, edit: PendingMemoryEdit, user: AbstractBaseUser, note: str = "") -> PendingMemoryEdit:
    """Apply a queued agent edit to the block as it is now (re-running append/replace on the current value).

    If the block moved on so that the edit no longer applies, the edit is marked "could not apply" (that
    decision is kept) and MemoryEditError tells the caller why.
    """
    conflict: MemoryEditError | None = None
    with transaction.atomic():
        edit = PendingMemoryEdit.objects.select_for_update().get(pk=edit.pk)
        if edit.status != PendingMemoryEdit.Status.PENDING:
            raise MemoryEditError(f"This edit was already {edit.get_status_display().lower()}.")
        block = _locked(edit.block)
        try:
            if edit.operation == PendingMemoryEdit.Operation.APPEND:
                proposed = apply_append(block.value, edit.new_content)
            else:
                proposed = apply_replace(block.value, edit.old_content, edit.new_content)
        except MemoryEditError as exc:
            conflict = exc
            edit.status = PendingMemoryEdit.Status.CONFLICT
            edit.decision_note = f"Could not apply to the current block: {exc}"
        else:
            block.value = proposed
            block.version += 1
            reason = f"approved agent edit #{edit.pk}" + (f": {note}" if note else "")
            _save_with_provenance(
                block,
                Provenance(
                    source=ChangeSource.AGENT,
                    user=user,
                    agent_run_id=edit.agent_run_id,
                    agent_step_id=edit.agent_step_id,
                    prompting_message_id=edit.prompting_message_id,
                    reason=reason,
                ),
            )
            edit.status = PendingMemoryEdit.Status.APPROVED
            edit.decision_note = note
        edit.decided_by = user  # type: ignore[assignment]
        edit.decided_at = timezone.now()
        edit.save()
    if conflict is not None:
        raise MemoryEditError(edit.decision_note) from conflict
    return edit


def pending_edit_reject(*, edit: PendingMemoryEdit, user: AbstractBaseUser, note: str = "") -> PendingMemoryEdit:
    with transaction.atomic():
        edit = PendingMemoryEdit.objects.select_for_update().get(pk=edit.pk)
        if edit.status != PendingMemoryEdit.Status.PENDING:
            raise MemoryEditError(f"This edit was already {edit.get_status_display().lower()}.")
        edit.status = PendingMemoryEdit.Status.REJECTED
        edit.decided_by = user  # type: ignore[assignment]
        edit.decided_at = timezone.now()
        edit.decision_note = note
        edit.save()
    return edit


def block_revert(*, block: MemoryBlock, history_id: int, provenance: Provenance) -> MemoryBlock:
    """Make a past version current again, as a new version: history is never rewritten."""
    past = block.history.filter(history_id=history_id).first()  # type: ignore[attr-defined]
    if past is None:
        raise MemoryEditError("No such version of this block.")
    reason = provenance.reason or f"reverted to version {past.version}"
    with transaction.atomic():
        current = _locked(block)
        current.value = past.value
        current.description = past.description
        current.char_limit = past.char_limit
        current.version += 1
        _save_with_provenance(current, Provenance(**{**provenance.__dict__, "reason": reason}))
    return current


def block_set_pinned(*, block: MemoryBlock, pinned: bool, provenance: Provenance) -> MemoryBlock:
    with transaction.atomic():
        current = _locked(block)
        if current.read_only == pinned:
            return current
        current.read_only = pinned
        current.version += 1
        reason = provenance.reason or ("pinned" if pinned else "unpinned")
        _save_with_provenance(current, Provenance(**{**provenance.__dict__, "reason": reason}))
    return current


def passage_insert(
    *,
    organization: Organization,
    customer: Customer | None,
    text: str,
    tags: list[str] | None = None,
    provenance: Provenance,
    source_message_id: int | None = None,
    staff_only: bool = False,
) -> tuple[ArchivalPassage, bool]:
    """Store a passage once per owner (identical text is deduplicated). Returns (passage, created).

    It is searchable by full text at once; its embedding is computed after commit. ``staff_only`` marks a
    passage derived from internal notes: customer-audience runs never see it. Storing the same text again
    without the mark lifts it (the text then reached memory by a customer-visible path too).
    """
    text = text.strip()
    if not text:
        raise MemoryEditError("Passage text is empty.")
    digest = content_hash(text)
    clean_tags = sorted({tag.strip().lower() for tag in (tags or []) if tag.strip()})
    existing = ArchivalPassage.objects.filter(
        organization=organization, customer=customer, text_hash=digest, invalidated_at__isnull=True
    ).first()
    if existing is not None:
        if existing.staff_only and not staff_only:
            ArchivalPassage.objects.filter(pk=existing.pk).update(staff_only=False)
            existing.staff_only = False
        return existing, False
    try:
        with transaction.atomic():
            passage = ArchivalPassage.objects.create(
                organization=organization,
                customer=customer,
                text=text,
                text_hash=digest,
                tags=clean_tags,
                source_message_id=source_message_id,
                staff_only=staff_only,
                created_by_id=provenance.user.pk
                if provenance.user and provenance.source == ChangeSource.STAFF
                else None,
                **provenance.fields(),
            )
    except IntegrityError:
        return ArchivalPassage.objects.get(
            organization=organization, customer=customer, text_hash=digest, invalidated_at__isnull=True
        ), False
    transaction.on_commit(lambda: passage_saved.send(sender=ArchivalPassage, passage_id=passage.pk))
    return passage, True


def passage_supersede(
    *,
    passage: ArchivalPassage,
    new_text: str,
    provenance: Provenance,
    tags: list[str] | None = None,
    source_message_id: int | None = None,
    staff_only: bool = False,
) -> ArchivalPassage:
    """Replace a fact with a newer one. The old passage keeps invalidated_at and a link to its successor."""
    with transaction.atomic():
        old = ArchivalPassage.objects.select_for_update().get(pk=passage.pk)
        if old.invalidated_at is not None:
            raise MemoryEditError("This passage was already superseded.")
        if content_hash(new_text) == old.text_hash:
            raise MemoryEditError("The new text is the same as the passage's; nothing to supersede.")
        old.invalidated_at = timezone.now()
        old.save(update_fields=["invalidated_at"])
        successor, _ = passage_insert(
            organization=old.organization,
            customer=old.customer,
            text=new_text,
            tags=old.tags if tags is None else tags,
            provenance=provenance,
            source_message_id=source_message_id,
            staff_only=old.staff_only or staff_only,  # a correction of a staff-only fact is staff-only too
        )
        old.superseded_by = successor
        old.save(update_fields=["superseded_by"])
    return successor


def passage_update_text(*, passage: ArchivalPassage, text: str, provenance: Provenance) -> ArchivalPassage:
    """Correct a passage in place (staff): its embedding is recomputed after commit."""
    text = text.strip()
    if not text:
        raise MemoryEditError("Passage text is empty.")
    with transaction.atomic():
        current = ArchivalPassage.objects.select_for_update().get(pk=passage.pk)
        current.text = text
        current.text_hash = content_hash(text)
        current.embedding = None
        current.embedding_model = ""
        current.sentence_count = None
        for name, value in provenance.fields().items():
            setattr(current, name, value)
        try:
            current.save()
        except IntegrityError as exc:
            raise MemoryEditError("An identical passage already exists for this customer.") from exc
        # The old text's sentences are not searched until the new text's are embedded (a correction may remove them).
        SentenceEmbedding.objects.filter(passage=current).delete()
    transaction.on_commit(lambda: passage_saved.send(sender=ArchivalPassage, passage_id=current.pk))
    return current


def passage_delete(*, passage: ArchivalPassage) -> None:
    passage.delete()


# ----------------------------------------------------------------------------------------------
# Merging two customers' memory (called by the agent layer's customer merge, inside its transaction)

MERGED_OVERFLOW_TAG = "merged-memory"


def blocks_merge(*, source: Customer, into: Customer, provenance: Provenance) -> dict[str, Any]:
    """Move the source customer's core memory into ``into``'s, block by block, and report what changed.

    A label only the source has moves as it is. A label both have is combined: the target's text first, then
    the source's lines the target lacks, as many whole lines as the block's char_limit allows; lines that do
    not fit are kept as one archival passage of the target (tag ``merged-memory``), so nothing is lost and no
    block goes over its limit. The source's pending edits follow their block. The report holds what an undo
    needs: each block's value and version before and after (``by_label``), and the moved history rows.
    """
    report: dict[str, Any] = {}
    targets = {b.label: b for b in MemoryBlock.objects.select_for_update().filter(customer=into)}
    for block in MemoryBlock.objects.select_for_update().filter(customer=source).order_by("label"):
        entry: dict[str, Any] = {
            "source_block_id": block.pk,
            "value": block.value,
            "description": block.description,
            "char_limit": block.char_limit,
            "read_only": block.read_only,
        }
        pending = list(PendingMemoryEdit.objects.filter(block=block).values_list("pk", flat=True))
        target = targets.get(block.label)
        if target is None:
            block.customer = into
            _save_with_provenance(block, provenance)
            PendingMemoryEdit.objects.filter(pk__in=pending).update(customer=into)
            report[block.label] = {**entry, "action": "moved", "pending_edit_ids": pending}
            continue
        combined, overflow = _combined_value(target.value, block.value, target.char_limit)
        entry.update(
            action="combined",
            into_block_id=target.pk,
            into_value_before=target.value,
            into_version_before=target.version,
            pending_edit_ids=pending,
        )
        if combined != target.value:
            target.value, target.version = combined, target.version + 1
            _save_with_provenance(target, provenance)
        entry["into_version_after"] = target.version
        if overflow:
            passage, created = passage_insert(
                organization=into.organization,
                customer=into,
                text=f"From core memory '{block.label}' of a merged customer record:\n{overflow}",
                tags=[MERGED_OVERFLOW_TAG, block.label],
                provenance=provenance,
            )
            entry["overflow_passage_id"] = passage.pk if created else None
        PendingMemoryEdit.objects.filter(pk__in=pending).update(block=target, customer=into)
        block._provenance = {**provenance.fields(), "reason": provenance.reason}  # type: ignore[attr-defined]
        block.delete()
        report[block.label] = entry
    # The history rows of the source's blocks (the deletions just written included) hold its words: they follow
    # the customer, so that erasing the remaining customer erases them too.
    history = MemoryBlock.history.model.objects.filter(customer_id=source.pk)  # type: ignore[attr-defined]
    history_ids = list(history.values_list("history_id", flat=True))
    history.update(customer_id=into.pk)
    return {"by_label": report, "history_ids": history_ids}


def _combined_value(kept: str, added: str, limit: int) -> tuple[str, str]:
    """``kept`` plus the lines of ``added`` it lacks, within ``limit``; returns (value, lines that did not fit)."""
    known = {line.strip().casefold() for line in kept.splitlines() if line.strip()}
    value, overflow = kept.rstrip(), list[str]()
    for line in added.splitlines():
        if not line.strip() or line.strip().casefold() in known:
            continue
        known.add(line.strip().casefold())
        candidate = f"{value}\n{line}" if value else line
        if len(candidate) <= limit and not overflow:
            value = candidate
        else:
            overflow.append(line)
    return value, "\n".join(overflow)


def passages_merge(*, source: Customer, into: Customer) -> dict[str, Any]:
    """Move the source's archival passages to ``into``. A current passage whose text ``into`` already holds is
    superseded by that passage instead (one current copy per owner); the report lists both kinds."""
    moved: list[int] = []
    duplicates: list[int] = []
    existing = dict(
        ArchivalPassage.objects.filter(customer=into, invalidated_at__isnull=True).values_list("text_hash", "pk")
    )
    for passage in ArchivalPassage.objects.select_for_update().filter(customer=source):
        twin = existing.get(passage.text_hash) if passage.invalidated_at is None else None
        if twin is not None:
            passage.invalidated_at, passage.superseded_by_id = timezone.now(), twin
            duplicates.append(passage.pk)
        moved.append(passage.pk)
        passage.customer = into
        passage.save(update_fields=["customer", "invalidated_at", "superseded_by"])
    return {"passage_ids": moved, "duplicate_passage_ids": duplicates}
