"""One package per wire protocol; each only translates between its wire format and the core."""
