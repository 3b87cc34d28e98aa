"""The fault-injection suite: a seeded run of mixed load and faults, then the invariants.

Run by ``make faults`` (and CI), which sets MDMAPPLIANCE_FAULTS=1; ``make test`` skips it.
MDMAPPLIANCE_FAULT_SEED replays a run; the seed and the figures are printed either way.
"""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

from twisted.trial.unittest import TestCase

from tests.faults.harness import Harness

KILLS = 20
#: Every kind of fault at least this often besides the kills.
OTHERS = {"lock": 3, "readonly": 3, "fsize": 2, "apns": 3, "webhooks": 3}


class FaultInjection(TestCase):
    timeout = 900

    def setUp(self) -> None:
        if os.environ.get("MDMAPPLIANCE_FAULTS") != "1":
            raise self.skipTest("the fault suite runs with `make faults`")

    async def test_nothing_acknowledged_is_lost(self) -> None:
        seed = int(
            os.environ.get("MDMAPPLIANCE_FAULT_SEED") or random.SystemRandom().getrandbits(32)
        )
        print(
            f"\nfault suite seed: {seed} (MDMAPPLIANCE_FAULT_SEED={seed} replays it)",
            file=sys.stderr,
        )
        harness = Harness(Path(self.mktemp()).absolute(), seed)
        self.addCleanup(harness.kill)
        self.addCleanup(harness.pool.closeCachedConnections)
        self.addCleanup(harness.apns.port.stopListening)
        self.addCleanup(lambda: harness.receiver.port.stopListening())
        harness.start()
        await harness.until_healthy("start")
        while len(harness.devices) < harness.device_count:
            device = await harness.enroll_through_a_link()
            if device is not None:
                harness.devices.append(device)

        plan = ["kill"] * KILLS + [kind for kind, n in OTHERS.items() for _ in range(n)]
        harness.rng.shuffle(plan)
        for kind in plan:
            for _ in range(harness.rng.randint(1, 3)):
                await harness.round()
            if harness.rng.random() < 0.2:  # new devices keep enrolling through links
                device = await harness.enroll_through_a_link()
                if device is not None:
                    harness.devices.append(device)
            await harness.fault(kind)

        await harness.drain()
        await harness.webhooks_delivered()
        harness.stop()
        harness.check_the_database()
        print(harness.figures(seed), file=sys.stderr)
        self.assertGreaterEqual(harness.ledger.faults["kill"], KILLS)
        self.assertGreater(len(harness.ledger.committed), 0)
        self.assertEqual(harness.ledger.violations, [], f"seed {seed}")
