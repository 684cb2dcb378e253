"""Legal and privacy approval workflows: requests, signed decisions, separation of duties."""
