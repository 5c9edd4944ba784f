"""Events the tickets layer announces. Higher layers (memory, the agent) subscribe; tickets imports neither.

Both are sent after the transaction that caused them commits.
"""

from django.dispatch import Signal

# kwargs: message_id, author_role, trigger_agent (False when the caller runs the agent itself)
message_ingested = Signal()
# kwargs: ticket_id
ticket_solved = Signal()
# History import (tickets.imports). Sent synchronously, outside any transaction, so receivers' work is timed
# and counted by the import. kwargs: organization_id, message_ids (stored without announcement: embed them)
messages_imported = Signal()
# kwargs: organization_id (an import ended: embed whatever it left without an embedding)
import_finished = Signal()
# kwargs: customer_id, ticket_ids (solved imported tickets, oldest first). Receivers consolidate each one not
# consolidated before and return how many runs they made.
imported_tickets_consolidate = Signal()
# kwargs: organization_id, tickets (list of {"subject": str, "transcript": str}). Receivers return
# {"runs", "prompt_tokens", "completion_tokens", "model", "offline"} without spending anything.
consolidation_estimate = Signal()
