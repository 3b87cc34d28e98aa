"""Device protocol models: check-in and report messages, protocol errors with their HTTP
statuses, platforms, and the ErrorChain words of the spec's "Error Codes"."""
