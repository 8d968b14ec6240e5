"""Birthday and anniversary rewards (issue 20). See shared.occasions.service and docs/occasions.md."""
