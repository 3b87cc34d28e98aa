"""Numbered SQL migrations, ``NNNN_name.sql``; the package makes them importable resources."""
