"""The manual review queue (issue 6): see ``shared.reviews.queue`` for the interface."""

from shared.reviews.queue import (APPROVED, OPEN, REJECTED, STATUSES, WITHDRAWN, ReviewQueue, decision_key,
                                  review_id)

__all__ = ["APPROVED", "OPEN", "REJECTED", "STATUSES", "WITHDRAWN", "ReviewQueue", "decision_key", "review_id"]
