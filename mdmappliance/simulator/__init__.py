"""Simulated Apple devices: enrolled through a link and SCEP as a device is, speaking the
check-in and command protocol over mTLS, answering every request type (``mdmappliance
simulate``, and the test suite's device model)."""
