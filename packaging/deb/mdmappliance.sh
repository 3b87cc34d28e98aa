#!/bin/sh
# mdmappliance from the .deb: the single-file build (a shiv zipapp) run by the system's python3.
# Each build unpacks its packages once, under SHIV_ROOT. Under systemd that is
# $STATE_DIRECTORY/.shiv (/var/lib/mdmappliance/.shiv: the unit's ProtectSystem=strict lets the
# service write nowhere else); for anyone else, shiv's default ~/.shiv. A SHIV_ROOT already set
# wins. exec, so that the service's main process is Python itself (Type=notify needs that).
if [ -z "${SHIV_ROOT:-}" ] && [ -n "${STATE_DIRECTORY:-}" ]; then
    SHIV_ROOT="${STATE_DIRECTORY%%:*}/.shiv"
    export SHIV_ROOT
fi
here=$(dirname "$(readlink -f "$0")")
exec /usr/bin/python3 "$here/../lib/mdmappliance.pyz" "$@"
