"""Settings: the server's, each model's, the backend registry that names each model's config
type, and the reference table built from them."""
