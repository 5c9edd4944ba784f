from django.apps import AppConfig


class TicketsConfig(AppConfig):
    name = "tickets"
    verbose_name = "Customers and tickets"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from tickets import receivers  # noqa: F401  (agent replies go back to the helpdesk)
