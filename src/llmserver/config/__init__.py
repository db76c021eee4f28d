"""Settings: the server's, each model's, and the reference table built from them."""
