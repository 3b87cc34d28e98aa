"""The running appliance: the service tree, twistd tap, ``serve``, HTTP listeners, logs,
retention."""
