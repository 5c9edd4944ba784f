from django.apps import AppConfig


class TicketsConfig(AppConfig):
    name = "tickets"
    verbose_name = "Customers and tickets"
    default_auto_field = "django.db.models.BigAutoField"
