"""The index's store: files, records, their validation, and the read interface (Catalog)."""
