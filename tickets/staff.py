"""Staff roles as Django groups: support staff view and correct memory; reviewers also approve agent edits."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, Group, Permission

SUPPORT_STAFF_GROUP = "Support staff"
MEMORY_REVIEWERS_GROUP = "Memory reviewers"
ORGANIZATION_ADMINS_GROUP = "Organisation admins"
# What an organisation admin may do beyond support staff: change the organisation's settings, manage API keys.
_ORG_ADMIN_PERMISSIONS = ["change_organization", "add_apikey", "view_apikey", "view_organization"]

_STAFF_APPS = ["tickets", "memory", "support_agent"]
# Rows staff read but never change by hand: traces, raw history, organisations' keys.
_READ_ONLY_MODELS = {
    "agentrun", "agentstep", "historicalmemoryblock", "apikey", "organization", "staffmembership", "importedticket",
}  # fmt: skip


def ensure_staff_groups() -> tuple[Group, Group]:
    staff, _ = Group.objects.get_or_create(name=SUPPORT_STAFF_GROUP)
    reviewers, _ = Group.objects.get_or_create(name=MEMORY_REVIEWERS_GROUP)
    org_admins, _ = Group.objects.get_or_create(name=ORGANIZATION_ADMINS_GROUP)
    org_admins.permissions.set(
        Permission.objects.filter(content_type__app_label="tickets", codename__in=_ORG_ADMIN_PERMISSIONS)
    )
    permissions = Permission.objects.filter(content_type__app_label__in=_STAFF_APPS)
    staff_permissions = [
        p
        for p in permissions
        if p.content_type.model not in _READ_ONLY_MODELS or p.codename.startswith("view_")
        if p.content_type.model != "pendingmemoryedit" or p.codename.startswith("view_")
    ]
    staff.permissions.set(staff_permissions)
    reviewer_permissions = staff_permissions + [p for p in permissions if p.content_type.model == "pendingmemoryedit"]
    reviewers.permissions.set(reviewer_permissions)
    return staff, reviewers


def grant_staff_permissions(user: AbstractBaseUser, *, reviewer: bool = False, org_admin: bool = False) -> None:
    staff, reviewers = ensure_staff_groups()
    user.groups.add(staff)  # type: ignore[attr-defined]
    if reviewer:
        user.groups.add(reviewers)  # type: ignore[attr-defined]
    if org_admin:
        user.groups.add(Group.objects.get(name=ORGANIZATION_ADMINS_GROUP))  # type: ignore[attr-defined]
