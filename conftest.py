"""Registers the opsverify plugin and the fixture modules; nothing else lives here."""

pytest_plugins = [
    "opsverify.plugin",
    "fixtures.core",
    "fixtures.smoke",
    "fixtures.dr",
    "fixtures.integration",
    "fixtures.perf",
    "fixtures.migration",
]
