"""The enrollment side of the tree: the profile factory (CA, signer, MDM payload settings,
SCEP), the SCEP server, and the enrollment listener (TLS, no client certificate) serving
``/enroll/<token>`` and ``/scep``."""

from __future__ import annotations

import datetime

from cryptography import x509
from twisted.internet.endpoints import (
    SSL4ServerEndpoint,
)
from twisted.logger import Logger

from mdmappliance import pki
from mdmappliance.admin.metrics import Metrics
from mdmappliance.app.graceful import ConnectionLimits, DrainingSite, ListenerService
from mdmappliance.app.reactor import Reactor
from mdmappliance.app.tls import server_tls_options
from mdmappliance.config import Config
from mdmappliance.device.digest import DigestAuthority
from mdmappliance.enrollment.configuration_url import ConfigurationURL
from mdmappliance.enrollment.factory import ProfileFactory, SCEPProfile
from mdmappliance.enrollment.profile import MDMSettings
from mdmappliance.enrollment.routes import EnrollmentEndpoint, masked_token_path
from mdmappliance.pki.signing import ProfileSigner
from mdmappliance.pki.users import read_users_file
from mdmappliance.scep.csr import KeyPolicy
from mdmappliance.scep.routes import SCEPEndpoint
from mdmappliance.scep.service import SCEPService
from mdmappliance.store import Store

log = Logger()


def profile_trust_chain(config: Config) -> tuple[x509.Certificate, ...]:
    """The CA certificates a device needs to trust the server certificate, when configured:
    the chain in the server certificate file, plus the appliance CA when it issued it."""
    if not config.enrollment.include_server_ca:
        return ()
    server_chain = pki.read_certificates(config.pki.server_cert)
    appliance_ca = pki.read_certificate(config.pki.ca_cert)
    chain = [c for c in server_chain[1:] if pki.is_ca_certificate(c)]
    if server_chain[0].issuer == appliance_ca.subject and appliance_ca not in chain:
        chain.append(appliance_ca)
    return tuple(chain)


def profile_signer(config: Config) -> ProfileSigner:
    e = config.enrollment
    return ProfileSigner.from_files(e.signing_cert, e.signing_key, config.pki.ca_cert)


def scep_profile(config: Config) -> SCEPProfile | None:
    """Where profiles send devices for their identity; None for PKCS#12 profiles."""
    if config.enrollment.identity != "scep":
        return None
    s = config.scep
    return SCEPProfile(
        url=config.scep_url(),
        name=f"mdmappliance {config.appliance.hostname}",
        keysize=2048 if s.rsa_min_bits <= 2048 else 4096,
        retries=s.retries,
        retry_delay=s.retry_delay,
        challenge_lifetime=datetime.timedelta(hours=s.challenge_hours),
    )


def scep_service(config: Config, store: Store, issuer: pki.IssuedPair) -> SCEPService:
    s = config.scep
    days = s.identity_days or config.enrollment.identity_days
    return SCEPService(
        store=store,
        ca=issuer,
        policy=KeyPolicy(rsa_min_bits=s.rsa_min_bits, ec_curves=s.ec_curves),
        lifetime=datetime.timedelta(days=days),
    )


def profile_factory(config: Config) -> ProfileFactory:
    e = config.enrollment
    return ProfileFactory(
        issuer=pki.read_issuer(config.pki.ca_cert, config.pki.ca_key),
        signer=profile_signer(config),
        identifier=config.profile_identifier(),
        display_name=f"Device management ({config.appliance.hostname})",
        organization=e.organization,
        trust_chain=profile_trust_chain(config),
        identity_lifetime=datetime.timedelta(days=e.identity_days),
        settings=lambda: MDMSettings.from_config(config, config.push_topic()),
        scep=scep_profile(config),
    )


def dep_login(config: Config, reactor: Reactor) -> DigestAuthority | None:
    """HTTP Digest at the ConfigurationURL, when ``[dep] require_login`` asks for it."""
    users_file = config.users_file()
    if not config.dep.require_login or users_file is None:
        return None
    users = read_users_file(users_file, config.device.users_realm)
    return DigestAuthority(users, config.device.users_realm, reactor, method="POST")


def enrollment_listener(
    config: Config,
    reactor: Reactor,
    store: Store,
    factory: ProfileFactory,
    metrics: Metrics | None = None,
) -> ListenerService:
    e = config.enrollment
    scep = (
        SCEPEndpoint(scep_service(config, store, factory.issuer)) if config.scep.enabled else None
    )
    dep = (
        ConfigurationURL(
            store=store,
            factory=factory,
            minimum_os=config.dep.minimum_os,
            login=dep_login(config, reactor),
        )
        if config.dep.enabled
        else None
    )
    routes = EnrollmentEndpoint(
        store=store,
        factory=factory,
        scep=scep,
        scep_path=config.scep.path,
        configuration_url=dep,
        configuration_path=config.dep.enroll_path,
    )
    site = DrainingSite(
        routes.resource(),
        max_body_bytes=64 * 1024,
        metrics=metrics,
        metrics_name="enrollment",
    )
    site.routes = routes
    site.loggable_path = masked_token_path
    site.displayTracebacks = False
    endpoint = SSL4ServerEndpoint(
        reactor, e.port, server_tls_options(config, None), interface=e.bind
    )
    return ListenerService(
        "enrollment",
        endpoint,
        site,
        clock=reactor,
        grace=config.appliance.shutdown_grace,
        describe=f"{e.bind}:{e.port}",
        limits=ConnectionLimits(e.max_connections, e.max_connections_per_address),
    )
