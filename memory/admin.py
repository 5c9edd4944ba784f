"""Admin for memory: blocks (with history), the review queue, archival passages."""

from __future__ import annotations

from django.contrib import admin
from simple_history.admin import SimpleHistoryAdmin

from memory.models import ArchivalPassage, MemoryBlock, PendingMemoryEdit
from tickets.admin import OrgScopedAdmin


@admin.register(MemoryBlock)
class MemoryBlockAdmin(OrgScopedAdmin, SimpleHistoryAdmin):
    list_display = ["label", "customer", "organization", "chars", "read_only", "version", "updated_at"]
    list_filter = ["label", "read_only"]
    list_select_related = ["customer", "organization"]
    search_fields = ["label", "value", "customer__name", "customer__email"]
    raw_id_fields = ["customer"]
    readonly_fields = ["version", "updated_at"]

    @admin.display(description="characters")
    def chars(self, block: MemoryBlock) -> str:
        return f"{block.chars_current}/{block.char_limit}"


@admin.register(PendingMemoryEdit)
class PendingMemoryEditAdmin(OrgScopedAdmin):
    list_display = ["block", "customer", "operation", "status", "created_at"]
    list_filter = ["status", "operation"]
    list_select_related = ["block", "customer"]
    raw_id_fields = ["block", "customer", "prompting_message", "decided_by"]


@admin.register(ArchivalPassage)
class ArchivalPassageAdmin(OrgScopedAdmin):
    list_display = ["__str__", "customer", "tags", "embedding_model", "created_at", "invalidated_at"]
    list_filter = ["embedding_model"]
    list_select_related = ["customer"]
    search_fields = ["text", "customer__name", "customer__email"]
    raw_id_fields = ["customer", "source_message", "superseded_by", "prompting_message", "created_by"]
    exclude = ["embedding"]
    readonly_fields = ["text_hash", "embedding_model", "created_at"]
