"""Provider adapters: one module per upstream wire format."""
