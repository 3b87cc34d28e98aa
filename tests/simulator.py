"""Moved to ``mdmappliance.simulator.device`` (the product's ``mdmappliance simulate``); kept
while suites written against the old path are converted."""

from mdmappliance.simulator.device import (
    TOPIC,
    Reply,
    SimulatedDevice,
    detached_signature,
    digest_response,
    fetch_profile,
    get_enrollment_link,
    install_profile,
    issue_device_identity,
    reactor,
    tls_client,
)

__all__ = [
    "TOPIC",
    "Reply",
    "SimulatedDevice",
    "detached_signature",
    "digest_response",
    "fetch_profile",
    "get_enrollment_link",
    "install_profile",
    "issue_device_identity",
    "reactor",
    "tls_client",
]
