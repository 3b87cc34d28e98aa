"""The device channel: check-in and command handling, identity binding and resolution,
HTTP Digest for UserAuthenticate, inactive devices, and its routes."""
