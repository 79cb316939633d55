"""The client side of the index: publish, look up, mirror."""
