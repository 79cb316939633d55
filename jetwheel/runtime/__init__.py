"""The runtime the wheels meet: an image's files, its policy, and the runtime tarball."""
