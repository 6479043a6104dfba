"""Built-in policies, loaded exactly like third-party plugins."""
