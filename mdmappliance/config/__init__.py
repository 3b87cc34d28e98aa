"""The one TOML config file: its schema, its documentation, loading and validation.

The schema is the section dataclasses of ``sections/``, each key declared with ``setting``
(``fields``). Each key's help text lives beside it, and ``render_config`` (``render``) turns
the schema into the documented file that ``init`` writes and that ``conf/mdmappliance.toml``
shows, so the documentation cannot drift from what is loaded. ``load_config`` (``loader``)
reads a file into a ``Config`` (``model``) and cross-checks the files it names (``checks``).
Unknown keys are errors: in a config file they are nearly always typos.

This package re-exports every public name, so ``from mdmappliance.config import X`` works.
"""

from __future__ import annotations

from mdmappliance.config.errors import ConfigError
from mdmappliance.config.fields import (
    Check,
    check_access_rights,
    check_gateway,
    check_hostname,
    check_https_url_or_empty,
    check_ip_address,
    check_ip_addresses,
    check_not_empty,
    check_topic,
    check_url_path,
    check_webhook_urls,
    in_range,
    one_of,
    setting,
)
from mdmappliance.config.loader import load_config, parse_config
from mdmappliance.config.model import SECTIONS, Config
from mdmappliance.config.render import EXAMPLE_HEADER, render_config, render_example
from mdmappliance.config.sections.admin import MIN_API_KEY_LENGTH, AdminSection
from mdmappliance.config.sections.apns import APNsSection
from mdmappliance.config.sections.appliance import (
    LOG_FORMATS,
    LOG_LEVELS,
    SYNCHRONOUS_MODES,
    ApplianceSection,
    LogSection,
    PKISection,
    StoreSection,
)
from mdmappliance.config.sections.device import DeviceSection, ProxySection
from mdmappliance.config.sections.enrollment import EnrollmentSection
from mdmappliance.config.sections.webhooks import RetentionSection, WebhooksSection

__all__ = [
    "EXAMPLE_HEADER",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "MIN_API_KEY_LENGTH",
    "SECTIONS",
    "SYNCHRONOUS_MODES",
    "APNsSection",
    "AdminSection",
    "ApplianceSection",
    "Check",
    "Config",
    "ConfigError",
    "DeviceSection",
    "EnrollmentSection",
    "LogSection",
    "PKISection",
    "ProxySection",
    "RetentionSection",
    "StoreSection",
    "WebhooksSection",
    "check_access_rights",
    "check_gateway",
    "check_hostname",
    "check_https_url_or_empty",
    "check_ip_address",
    "check_ip_addresses",
    "check_not_empty",
    "check_topic",
    "check_url_path",
    "check_webhook_urls",
    "in_range",
    "load_config",
    "one_of",
    "parse_config",
    "render_config",
    "render_example",
    "setting",
]
