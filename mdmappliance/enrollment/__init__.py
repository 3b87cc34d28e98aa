"""Enrollment: one-time links, the enrollment profile and its factory, identity renewal,
revocation and retirement, and the enrollment routes."""
