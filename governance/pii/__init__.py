"""The PII gate: rules as code, the Presidio scanner, scan receipts and sanitized views."""
