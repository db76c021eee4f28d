"""Running llmserver as a service: systemd units, launchd plists, ``llmserver service``."""
