"""The platforms a device can be, and how to tell them from what the device says."""

from __future__ import annotations

import enum


class Platform(enum.StrEnum):
    IOS = "ios"
    MACOS = "macos"
    TVOS = "tvos"


def platform_of(product_name: str | None, model_name: str | None = None) -> Platform | None:
    """The platform a device's ProductName (or ModelName) names, or None if unknown. An
    Apple Watch (``Watch6,1``) or Vision Pro (``RealityDevice14,1``) is none of these: Apple's
    schema gives watchOS and visionOS their own support, so they stay unknown here rather
    than pass for iOS (a platform of their own is later work)."""
    for name in (product_name or "", model_name or ""):
        if name.startswith(("iPhone", "iPad", "iPod")):
            return Platform.IOS
        if name.startswith("AppleTV") or name == "Apple TV":
            return Platform.TVOS
        if name.startswith(("Mac", "iMac", "VirtualMac", "Xserve")):
            return Platform.MACOS
    return None


#: The platform names the API and the CLI accept and show.
PLATFORMS = tuple(platform.value for platform in Platform)
