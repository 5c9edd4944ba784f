"""Events the memory layer announces (after commit)."""

from django.dispatch import Signal

# kwargs: passage_id. The embedding pipeline listens and embeds the passage.
passage_saved = Signal()
