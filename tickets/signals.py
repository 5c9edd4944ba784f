"""Events the tickets layer announces. Higher layers (memory, the agent) subscribe; tickets imports neither.

Both are sent after the transaction that caused them commits.
"""

from django.dispatch import Signal

# kwargs: message_id, author_role, trigger_agent (False when the caller runs the agent itself)
message_ingested = Signal()
# kwargs: ticket_id
ticket_solved = Signal()
