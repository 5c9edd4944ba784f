from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    # Built without locking writes to a large message table (CREATE INDEX CONCURRENTLY runs outside a transaction).
    atomic = False

    dependencies = [
        ("tickets", "0008_import_jobs"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="ticketmessage",
            index=models.Index(fields=["ticket", "created_at", "id"], name="message_ticket_turn_order"),
        ),
    ]
