#!/bin/sh
# twistd from the single-file build, with the mdmappliance twistd plugin:
#   /opt/mdmappliance/bin/twistd -n mdmappliance --config /etc/mdmappliance/mdmappliance.toml
# (SHIV_ENTRY_POINT makes the zipapp run twistd instead of the console script.)
SHIV_ENTRY_POINT=twisted.scripts.twistd:run
export SHIV_ENTRY_POINT
exec "$(dirname "$(readlink -f "$0")")/mdmappliance" "$@"
