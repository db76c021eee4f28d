"""Status, health, metrics, usage, log level and who-am-i."""
