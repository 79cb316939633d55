"""A step's sources and sub-sources: fetched, checked against their pins, packed reproducibly."""
