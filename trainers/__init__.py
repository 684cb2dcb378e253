"""trainers: the data plane. Fine-tunes from a sanitized bundle; imports nothing of governance."""
