"""Training jobs: leases, heartbeats, bundles and executors (local worker, Celery)."""
