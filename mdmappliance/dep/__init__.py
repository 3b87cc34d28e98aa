"""Apple's Device Enrollment Program: the server token, the OAuth session, the device-sync
poller, DEP profiles, and enrollment through the ConfigurationURL."""
