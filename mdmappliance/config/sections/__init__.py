"""The config schema, one module per part of the service: each section is a frozen dataclass."""
