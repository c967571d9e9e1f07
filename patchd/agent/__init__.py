"""``patchd agent``: the long-running service that keeps an endpoint patched by its policy."""
