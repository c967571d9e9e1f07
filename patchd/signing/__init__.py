"""The trust layer: administrators' Ed25519 keys, DSSE signatures and versioned trust roots.

An endpoint enforces only what a threshold of trusted administrator keys signed. The keys
and the threshold are the *trust root*, itself versioned and rotated the way The Update
Framework rotates its root: each version must be signed by a threshold of the previous
version's keys and of its own (:mod:`patchd.signing.trust`). Signatures are DSSE v1 over
the exact bytes received (:mod:`patchd.signing.dsse`), made with keys from
:mod:`patchd.signing.keys`. Nothing here prints or exits: errors are
:class:`patchd.errors.TrustError`.
"""
