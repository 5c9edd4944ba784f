"""Admin for agent runs and their steps (the trace)."""

from __future__ import annotations

from django.contrib import admin

from support_agent.models import AgentRun, AgentStep
from tickets.admin import OrgScopedAdmin


class AgentStepInline(admin.StackedInline):
    model = AgentStep
    extra = 0
    can_delete = False
    readonly_fields = [
        "index",
        "latency_ms",
        "prompt_tokens",
        "completion_tokens",
        "context_tokens",
        "response",
        "tool_calls",
        "tool_results",
    ]
    exclude = ["request_messages"]


@admin.register(AgentRun)
class AgentRunAdmin(OrgScopedAdmin):
    list_display = ["__str__", "customer", "trigger", "status", "stop_reason", "step_count", "created_at"]
    list_filter = ["status", "trigger", "stop_reason"]
    list_select_related = ["customer"]
    raw_id_fields = ["customer", "ticket", "trigger_message", "reply_message"]
    inlines = [AgentStepInline]


@admin.register(AgentStep)
class AgentStepAdmin(OrgScopedAdmin):
    org_field = "run__organization"
    list_display = ["__str__", "latency_ms", "prompt_tokens", "completion_tokens", "created_at"]
    raw_id_fields = ["run"]
