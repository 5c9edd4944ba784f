"""API shapes for the compiled context, agent runs and steps, export and erasure, and the widget."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from support_agent.models import AgentRun, AgentStep, CustomerMerge
from tickets.models import TicketMessage

WIDGET_MAX_MESSAGE_CHARS = 4000


class ChatMessageSerializer(serializers.Serializer):
    """One OpenAI chat message (role, content, optional tool_calls / tool_call_id / name)."""

    role = serializers.CharField()
    content = serializers.CharField(allow_null=True, allow_blank=True, required=False)
    name = serializers.CharField(required=False)
    tool_calls = serializers.ListField(child=serializers.DictField(), required=False)
    tool_call_id = serializers.CharField(required=False)


class CompiledContextSerializer(serializers.Serializer):
    messages = ChatMessageSerializer(many=True, help_text="The prompt, ready for a chat completions call.")
    tokens_total = serializers.IntegerField()
    tokens_by_section = serializers.DictField(child=serializers.IntegerField())
    context_window = serializers.IntegerField()
    memory_pressure = serializers.BooleanField(help_text="True past 75% of the context window.")


class AgentStepSerializer(serializers.ModelSerializer):
    class Meta:
        model = AgentStep
        fields = [
            "index",
            "response",
            "tool_calls",
            "tool_results",
            "prompt_tokens",
            "completion_tokens",
            "context_tokens",
            "latency_ms",
            "created_at",
        ]


class AgentRunSerializer(serializers.ModelSerializer):
    ticket_id = serializers.IntegerField(allow_null=True, read_only=True)
    trigger_message_id = serializers.IntegerField(allow_null=True, read_only=True)
    reply_message_id = serializers.IntegerField(allow_null=True, read_only=True)
    steps = AgentStepSerializer(many=True, read_only=True)

    class Meta:
        model = AgentRun
        fields = [
            "id",
            "trigger",
            "status",
            "stop_reason",
            "error",
            "model_name",
            "reply",
            "ticket_id",
            "trigger_message_id",
            "reply_message_id",
            "step_count",
            "prompt_tokens",
            "completion_tokens",
            "created_at",
            "started_at",
            "finished_at",
            "steps",
        ]


class AgentRunSummarySerializer(AgentRunSerializer):
    class Meta(AgentRunSerializer.Meta):
        fields = [name for name in AgentRunSerializer.Meta.fields if name != "steps"]


class TurnCreateSerializer(serializers.Serializer):
    """The customer's message in ``body``, the name the widget and every message listing use. ``message`` is the
    older name of the same field, still accepted; sending both is refused."""

    body = serializers.CharField(max_length=20_000, required=False, help_text="What the customer says.")
    message = serializers.CharField(
        max_length=20_000, required=False, help_text="Deprecated name of body, still accepted."
    )
    ticket_id = serializers.IntegerField(required=False, allow_null=True, default=None, min_value=1)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "body" in attrs and "message" in attrs:
            raise serializers.ValidationError({"message": ["Send body only (message is its older name)."]})
        text = attrs.pop("message", None) if "body" not in attrs else attrs["body"]
        if text is None:
            raise serializers.ValidationError({"body": ["This field is required."]})
        attrs["body"] = text
        return attrs


class ExportSerializer(serializers.Serializer):
    """Every row held about the customer, by kind (field names as in the database)."""

    customer = serializers.DictField()
    identities = serializers.ListField(child=serializers.DictField())
    tickets = serializers.ListField(child=serializers.DictField())
    messages = serializers.ListField(child=serializers.DictField())
    memory_blocks = serializers.ListField(child=serializers.DictField())
    memory_block_history = serializers.ListField(child=serializers.DictField())
    pending_memory_edits = serializers.ListField(child=serializers.DictField())
    passages = serializers.ListField(child=serializers.DictField())
    agent_runs = serializers.ListField(child=serializers.DictField())
    agent_steps = serializers.ListField(child=serializers.DictField())
    webhook_events = serializers.ListField(child=serializers.DictField())


class ErasureSerializer(serializers.Serializer):
    deleted = serializers.DictField(
        child=serializers.IntegerField(), help_text='Rows deleted per kind, e.g. {"tickets.ticketmessage": 12}.'
    )


class WidgetSessionCreateSerializer(serializers.Serializer):
    # Not trimmed: the HMAC is checked over exactly the bytes sent, so "alice " is not alice.
    user_id = serializers.CharField(max_length=255, trim_whitespace=False, help_text="Your user id for this visitor.")
    user_hash = serializers.RegexField(
        r"^[0-9a-fA-F]{64}$", help_text="HMAC-SHA256(widget secret, user_id), hex, computed by your backend."
    )
    name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")


class WidgetCustomerSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()


class WidgetSessionSerializer(serializers.Serializer):
    token = serializers.CharField(help_text="Send as 'Authorization: Bearer <token>' to the widget endpoints.")
    token_type = serializers.CharField()
    expires_in = serializers.IntegerField(help_text="Seconds.")
    customer = WidgetCustomerSerializer()


class WidgetMessageSerializer(serializers.ModelSerializer):
    class Meta:
        model = TicketMessage
        fields = ["id", "author_role", "author_name", "body", "created_at"]


class WidgetHistoryQuerySerializer(serializers.Serializer):
    limit = serializers.IntegerField(min_value=1, max_value=200, default=50, help_text="The newest N messages.")


class WidgetMessageCreateSerializer(serializers.Serializer):
    body = serializers.CharField(max_length=WIDGET_MAX_MESSAGE_CHARS)


class CustomerMergeCreateSerializer(serializers.Serializer):
    into = serializers.IntegerField(min_value=1, max_value=2**63 - 1, help_text="The customer that remains.")


class CustomerMergeSerializer(serializers.ModelSerializer):
    class Meta:
        model = CustomerMerge
        fields = ["id", "into", "source_customer_id", "via", "created_at", "moved", "undone_at", "undo_report"]
