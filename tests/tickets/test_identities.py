"""One customer, identities in several helpdesks."""

from __future__ import annotations

import pytest
from django.db import IntegrityError

from tickets.models import CustomerIdentity
from tickets.services import customer_resolve


def test_customer_has_identities_in_two_helpdesks(actors):
    again = customer_resolve(
        organization=actors.org,
        source="intercom",
        external_id="ic-77",
        name="Dana W.",
        email="DANA@example.com",
        email_verified=True,
    )
    assert again.pk == actors.customer.pk  # matched by a verified email
    sources = set(actors.customer.identities.values_list("source", "external_id"))
    assert sources == {("zendesk", "zd-1"), ("intercom", "ic-77")}
    assert customer_resolve(organization=actors.org, source="intercom", external_id="ic-77").pk == actors.customer.pk


def test_unverified_email_never_attaches_a_new_identity(actors):
    newcomer = customer_resolve(
        organization=actors.org, source="intercom", external_id="ic-78", email="dana@example.com"
    )
    assert newcomer.pk != actors.customer.pk and newcomer.email == "dana@example.com"


def test_same_external_id_in_two_organisations_is_two_customers(actors):
    assert actors.stranger.pk != actors.customer.pk
    assert (
        customer_resolve(organization=actors.other_org, source="zendesk", external_id="zd-1").pk == actors.stranger.pk
    )


def test_identity_is_unique_per_source(actors):
    with pytest.raises(IntegrityError):
        CustomerIdentity.objects.create(
            organization=actors.org, customer=actors.other_customer, source="zendesk", external_id="zd-1"
        )


def test_resolving_is_idempotent(actors):
    first = customer_resolve(organization=actors.org, source="front", external_id="fr-9", name="New Person")
    second = customer_resolve(organization=actors.org, source="front", external_id="fr-9", name="New Person")
    assert first.pk == second.pk
