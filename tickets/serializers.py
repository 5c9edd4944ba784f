"""API shapes for customers, identities, tickets, messages, and the one error body."""

from __future__ import annotations

from rest_framework import serializers

from tickets.models import Customer, CustomerIdentity, Ticket, TicketMessage

# Text fields sent by clients are capped: a message body or a name never needs more, and a cap keeps
# one request from filling the database.
MAX_BODY_CHARS = 20_000


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Stable machine-readable code, e.g. not_found, validation_error.")
    message = serializers.CharField(help_text="What went wrong, for a human.")
    details = serializers.JSONField(help_text="Field errors for validation_error; other context otherwise.")


class ErrorSerializer(serializers.Serializer):
    """Every error answer: {"error": {"code", "message", "details"}}."""

    error = ErrorDetailSerializer()


class IdentitySerializer(serializers.ModelSerializer):
    class Meta:
        model = CustomerIdentity
        fields = ["source", "external_id", "created_at"]


class CustomerSerializer(serializers.ModelSerializer):
    identities = IdentitySerializer(many=True, read_only=True)

    class Meta:
        model = Customer
        fields = ["id", "name", "email", "metadata", "identities", "created_at", "updated_at"]


class CustomerCreateSerializer(serializers.Serializer):
    """Find or create the customer behind an external identity (idempotent)."""

    source = serializers.ChoiceField(  # type: ignore[assignment]  # a field named like Field.source
        choices=CustomerIdentity.Source.choices, default=CustomerIdentity.Source.API
    )
    external_id = serializers.CharField(max_length=255)
    name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    email = serializers.EmailField(max_length=254, required=False, allow_blank=True, default="")


class TicketSerializer(serializers.ModelSerializer):
    class Meta:
        model = Ticket
        fields = [
            "id",
            "external_id",
            "subject",
            "status",
            "priority",
            "channel",
            "tags",
            "created_at",
            "updated_at",
            "solved_at",
        ]


class TicketCreateSerializer(serializers.Serializer):
    external_id = serializers.CharField(
        max_length=255, required=False, allow_blank=True, default="", help_text="Your id; generated when blank."
    )
    subject = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")
    status = serializers.ChoiceField(choices=Ticket.Status.choices, default=Ticket.Status.NEW)
    priority = serializers.ChoiceField(choices=Ticket.Priority.choices, default=Ticket.Priority.NORMAL)
    channel = serializers.ChoiceField(choices=Ticket.Channel.choices, default=Ticket.Channel.API)
    tags = serializers.ListField(
        child=serializers.CharField(max_length=100, allow_blank=False), max_length=50, required=False, default=list
    )


class MessageSerializer(serializers.ModelSerializer):
    ticket_id = serializers.IntegerField(allow_null=True, read_only=True)

    class Meta:
        model = TicketMessage
        fields = ["id", "ticket_id", "author_role", "author_name", "body", "is_public", "external_id", "created_at"]


class MessageCreateSerializer(serializers.Serializer):
    body = serializers.CharField(max_length=MAX_BODY_CHARS, trim_whitespace=True)
    author_role = serializers.ChoiceField(choices=TicketMessage.Role.choices, default=TicketMessage.Role.CUSTOMER)
    author_name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    ticket_id = serializers.IntegerField(required=False, allow_null=True, default=None, min_value=1)
    is_public = serializers.BooleanField(default=True)
    external_id = serializers.CharField(
        max_length=255, required=False, allow_blank=True, default="", help_text="Makes the call idempotent per ticket."
    )
    created_at = serializers.DateTimeField(required=False, allow_null=True, default=None)
