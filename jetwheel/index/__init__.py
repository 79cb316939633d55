"""The package index: store (files + derived data), pages (PEP 503/691/658), app (HTTP), export."""
