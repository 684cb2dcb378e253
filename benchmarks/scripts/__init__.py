"""Benchmark steps that run in processes of their own (so their memory and time are theirs)."""
