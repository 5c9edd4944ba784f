"""The admin app with our own site, whose home screen lists what needs attention (support_agent.console)."""

from django.contrib.admin.apps import AdminConfig


class SupportmemAdminConfig(AdminConfig):
    default_site = "support_agent.console.SupportmemAdminSite"
