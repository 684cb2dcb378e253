"""The service side of the audit log: appending, checkpoints, proofs, exports and reports."""
