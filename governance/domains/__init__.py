"""Data domains: the segregation boundary every dataset, model and role lives inside."""
