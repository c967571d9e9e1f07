"""Signed policies: what is patched, when, and with what exceptions — decided by admins, enforced on the endpoint."""
