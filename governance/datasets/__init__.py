"""Datasets and their immutable, encrypted, content-hashed versions."""
