from django.apps import AppConfig


class SupportAgentConfig(AppConfig):
    name = "support_agent"
    verbose_name = "Agent"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from support_agent import receivers  # noqa: F401  (subscribes the agent to ticket events)
