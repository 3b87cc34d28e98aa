"""What this device channel implements that the MDM payload must announce: its
``ServerCapabilities`` (the enrollment profile carries them; Authenticate records them).

- ``com.apple.mdm.per-user-connections``: device and user channels (macOS users, Shared
  iPad); Apple requires it for those devices. A profile update must not add or remove it,
  so a renewal carries the set the device enrolled with.
- ``com.apple.mdm.bootstraptoken``: SetBootstrapToken / GetBootstrapToken are escrowed
  (macOS 11 and later create a Bootstrap Token only when it is announced).

``com.apple.mdm.token`` is not announced: GetToken is answered with an error (no token
service here).
"""

from __future__ import annotations

PER_USER_CONNECTIONS = "com.apple.mdm.per-user-connections"
BOOTSTRAP_TOKEN = "com.apple.mdm.bootstraptoken"
SERVER_CAPABILITIES: tuple[str, ...] = (PER_USER_CONNECTIONS, BOOTSTRAP_TOKEN)
