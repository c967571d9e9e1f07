"""Discovery: what this machine is, what it runs and what it is made of."""
