"""Apple's Volume Purchase Program: VPP App Assignment (the legacy services, behind an
interface a later client for "Apps and Books for Organizations" implements too)."""
