"""audit: the verifiable log. Standalone: the standard library and `cryptography` only."""
