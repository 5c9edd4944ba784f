from django.apps import AppConfig


class SupportAgentConfig(AppConfig):
    name = "support_agent"
    verbose_name = "Agent"
    default_auto_field = "django.db.models.BigAutoField"
