"""Copies provenance from the block being saved onto its history row.

Services set ``block._provenance`` (a dict of ProvenanceFields values plus a
reason) before saving; the history row then records who changed it and why.
"""

from __future__ import annotations

from typing import Any

from django.dispatch import receiver
from simple_history.signals import pre_create_historical_record

from tickets.signals import demo_seeded


@receiver(pre_create_historical_record)
def copy_provenance(sender: Any, instance: Any, history_instance: Any, **kwargs: Any) -> None:
    provenance: dict[str, Any] = getattr(instance, "_provenance", None) or {}
    for field in ("change_source", "agent_run_id", "agent_step_id", "prompting_message_id"):
        if field in provenance:
            setattr(history_instance, field, provenance[field])
    if "reason" in provenance:
        history_instance.history_change_reason = provenance["reason"]


@receiver(demo_seeded)
def seed_demo_memory(
    sender: Any,
    organization_id: int,
    customer_ids: list[int],
    persona: str,
    policies: str,
    blocks: dict[int, dict[str, str]],
    **kwargs: Any,
) -> None:
    """Give the demo customers their default blocks and starting facts (blank blocks only: idempotent)."""
    from memory.models import MemoryBlock
    from memory.services import Provenance, block_set_value, blocks_ensure
    from tickets.models import Customer

    seed = Provenance(reason="demo data")
    for customer in Customer.objects.filter(organization_id=organization_id, pk__in=customer_ids):
        blocks_ensure(customer=customer)
        for label, value in blocks.get(customer.pk, {}).items():
            block = MemoryBlock.objects.get(organization_id=organization_id, customer=customer, label=label)
            if not block.value:
                block_set_value(block=block, value=value, provenance=seed)
    for label, value in (("persona", persona), ("policies", policies)):
        block = MemoryBlock.objects.get(organization_id=organization_id, customer__isnull=True, label=label)
        if not block.value:
            block_set_value(block=block, value=value, provenance=seed)
