"""mdmappliance: a self-hosted Apple MDM server that runs as one twistd service."""

from mdmappliance._version import __version__

__all__ = ["__version__"]
