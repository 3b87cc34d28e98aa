"""The fault-injection suite (``make faults``): the appliance under load, faults injected."""
