"""Model families, versions, lineage, evaluation and promotion."""
