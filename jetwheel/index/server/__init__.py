"""The index server: routes, roles, pages; it imports only the bottom layer and the store."""
