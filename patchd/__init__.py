"""patchd: patch management that runs itself on every endpoint and can prove it."""

__version__ = "0.1.0"
