"""The web page's surface: the page at ``/ui`` and its data endpoints under ``/dashboard``."""
