"""The ``mdmappliance`` command: entry point, fleet commands over the admin API, push
certificate, init, and the few offline actions."""
