"""The packages suite (``make packages``): the single-file binary and the .deb, built by
``make dist`` and ``make deb``, each started as an administrator would start it; lintian's
verdict on the .deb. Slow, so ``make test`` skips it: it runs with MDMAPPLIANCE_PACKAGES=1."""
