"""The package index: catalog + store (files and derived data, read and changed), pages (PEP 503/691/658),
app (HTTP: the route table, answered by guard, reads, api, people, uploads and admin), export."""
