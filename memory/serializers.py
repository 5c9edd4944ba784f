"""API shapes for core memory blocks and archival passages."""

from __future__ import annotations

from rest_framework import serializers

from memory.models import ArchivalPassage, MemoryBlock
from tickets.serializers import MessageSerializer

MAX_PASSAGE_CHARS = 10_000
_BIGINT_MAX = 2**63 - 1


class MemoryBlockSerializer(serializers.ModelSerializer):
    scope = serializers.SerializerMethodField()
    chars_current = serializers.IntegerField(read_only=True)

    class Meta:
        model = MemoryBlock
        fields = [
            "id",
            "label",
            "scope",
            "description",
            "value",
            "chars_current",
            "char_limit",
            "read_only",
            "version",
            "updated_at",
        ]

    def get_scope(self, block: MemoryBlock) -> str:
        return "customer" if block.customer_id else "organization"


# The reason lands in simple-history's 100-character column with " (API key <prefix>)" after it.
API_REASON_MAX = 80


class MemoryBlockUpdateSerializer(serializers.Serializer):
    """A whole new value and why. The version you read goes in If-Match or here: without either the update is
    refused (428), a stale one gets 409."""

    value = serializers.CharField(allow_blank=True, trim_whitespace=False, max_length=MAX_PASSAGE_CHARS)
    version = serializers.IntegerField(required=False, min_value=1, max_value=_BIGINT_MAX)
    reason = serializers.CharField(
        max_length=API_REASON_MAX, help_text="Why the block changes; kept in its history, as in the admin."
    )


class MemoryBlockCreateSerializer(serializers.Serializer):
    """A new block: its label (a slug), what belongs in it, its first value and size limit."""

    label = serializers.SlugField(max_length=64)  # type: ignore[assignment]  # DRF pops declared fields
    description = serializers.CharField(max_length=500, allow_blank=True, required=False, default="")
    value = serializers.CharField(
        allow_blank=True, trim_whitespace=False, max_length=MAX_PASSAGE_CHARS, required=False, default=""
    )
    char_limit = serializers.IntegerField(min_value=100, max_value=MAX_PASSAGE_CHARS, required=False, default=2000)
    read_only = serializers.BooleanField(required=False, default=False)  # type: ignore[assignment]
    # History keeps 100 characters of reason; the API key's prefix is appended to it.
    reason = serializers.CharField(max_length=60, allow_blank=True, required=False, default="")

    def validate(self, attrs: dict) -> dict:  # type: ignore[type-arg]
        if len(attrs["value"]) > attrs["char_limit"]:
            raise serializers.ValidationError({"value": [f"At most {attrs['char_limit']} characters for this block."]})
        return attrs


class PassageSerializer(serializers.ModelSerializer):
    superseded_by_id = serializers.IntegerField(allow_null=True, read_only=True)
    source_message_id = serializers.IntegerField(allow_null=True, read_only=True)
    has_embedding = serializers.SerializerMethodField()

    class Meta:
        model = ArchivalPassage
        fields = [
            "id",
            "text",
            "tags",
            "change_source",
            "source_message_id",
            "embedding_model",
            "has_embedding",
            "created_at",
            "invalidated_at",
            "superseded_by_id",
        ]

    def get_has_embedding(self, passage: ArchivalPassage) -> bool:
        return passage.embedding is not None


class PassageCreateSerializer(serializers.Serializer):
    text = serializers.CharField(max_length=MAX_PASSAGE_CHARS)
    tags = serializers.ListField(
        child=serializers.CharField(max_length=100), max_length=20, required=False, default=list
    )


class PassageSupersedeSerializer(serializers.Serializer):
    text = serializers.CharField(max_length=MAX_PASSAGE_CHARS, help_text="The fact that replaces this one.")
    tags = serializers.ListField(
        child=serializers.CharField(max_length=100),
        max_length=20,
        required=False,
        help_text="Omit to keep the old passage's tags.",
    )


class PassageSearchQuerySerializer(serializers.Serializer):
    q = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")
    tags = serializers.ListField(child=serializers.CharField(max_length=100), required=False, default=list)
    start = serializers.DateTimeField(required=False, allow_null=True, default=None)
    end = serializers.DateTimeField(required=False, allow_null=True, default=None)
    page = serializers.IntegerField(min_value=1, max_value=10_000, default=1)
    page_size = serializers.IntegerField(min_value=1, max_value=100, default=10)
    include_invalidated = serializers.BooleanField(default=False)


class PassageSearchResultSerializer(serializers.Serializer):
    results = PassageSerializer(many=True)
    page = serializers.IntegerField()
    page_size = serializers.IntegerField()
    total = serializers.IntegerField()
    has_next = serializers.BooleanField()


class MessageSearchQuerySerializer(serializers.Serializer):
    q = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")
    customer_id = serializers.IntegerField(
        required=False,
        allow_null=True,
        default=None,
        min_value=1,
        max_value=_BIGINT_MAX,
        help_text="Only this customer's messages, ranked by the agent's hybrid recall search.",
    )
    start = serializers.DateTimeField(required=False, allow_null=True, default=None)
    end = serializers.DateTimeField(required=False, allow_null=True, default=None)
    page = serializers.IntegerField(min_value=1, max_value=10_000, default=1)
    page_size = serializers.IntegerField(min_value=1, max_value=100, default=10)


class MessageSearchHitSerializer(MessageSerializer):
    customer_id = serializers.IntegerField(read_only=True)

    class Meta(MessageSerializer.Meta):
        fields = ["customer_id", *MessageSerializer.Meta.fields]


class MessageSearchResultSerializer(serializers.Serializer):
    results = MessageSearchHitSerializer(many=True)
    page = serializers.IntegerField()
    page_size = serializers.IntegerField()
    total = serializers.IntegerField()
    has_next = serializers.BooleanField()
