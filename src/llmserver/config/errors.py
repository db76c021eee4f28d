"""The configuration error every settings check raises."""


class SettingsError(Exception):
    """Start-up configuration is invalid; the message names the key or the path."""
