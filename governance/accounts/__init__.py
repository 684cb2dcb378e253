"""Principals (users and service accounts) and their API tokens."""
