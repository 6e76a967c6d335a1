"""The admins' "Sistema" page: the organization's job queue, failing jobs, each provider's
connection and last webhook received, and today's error rate (``/metrics`` is core.metrics)."""
