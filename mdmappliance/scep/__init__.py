"""The built-in SCEP server (RFC 8894): devices make their own key pair and get their
identity from the appliance CA, so the private key never leaves the device."""
