"""Signed status reports: this endpoint's identity, enrolment, reports and their outbox.

An endpoint makes an Ed25519 key on first use (:mod:`.identity`), enrols it with a
collector using an admin's token (:mod:`.enrolment`), and then describes itself in
reports (:mod:`.payload`, gathered by :mod:`.collect`) signed as DSSE envelopes
(:mod:`.envelope`). Every report is numbered and stored in a crash-safe outbox before it
is sent (:mod:`.outbox`); :mod:`.sender` delivers the outbox in order with backoff
(:mod:`.backoff`), and :mod:`.agent` hooks all of it into the agent. The contract with the
collector is docs/reporting.md. Nothing here imports the collector's libraries.
"""
