"""``python -m mdmappliance`` runs the same CLI as the console script."""

from mdmappliance.cli.main import main

raise SystemExit(main())
