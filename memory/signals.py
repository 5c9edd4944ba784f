"""Copies provenance from the block being saved onto its history row.

Services set ``block._provenance`` (a dict of ProvenanceFields values plus a
reason) before saving; the history row then records who changed it and why.
"""

from __future__ import annotations

from typing import Any

from django.dispatch import receiver
from simple_history.signals import pre_create_historical_record


@receiver(pre_create_historical_record)
def copy_provenance(sender: Any, instance: Any, history_instance: Any, **kwargs: Any) -> None:
    provenance: dict[str, Any] = getattr(instance, "_provenance", None) or {}
    for field in ("change_source", "agent_run_id", "agent_step_id", "prompting_message_id"):
        if field in provenance:
            setattr(history_instance, field, provenance[field])
    if "reason" in provenance:
        history_instance.history_change_reason = provenance["reason"]
