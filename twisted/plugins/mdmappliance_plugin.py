"""twistd plugin: names its module as a string, so discovery imports nothing of ours."""

from twisted.application.service import ServiceMaker

mdmappliance = ServiceMaker(
    "mdmappliance",
    "mdmappliance.app.tap",
    "Apple MDM server appliance (device check-in, commands, admin API)",
    "mdmappliance",
)
