"""The record of a certification: closure records and their attestations, the hash-chained
ledger that vouches for them, PLAN.md's status block, and what changed since (staleness,
drift). `publish.certify` runs a certification and writes its record."""
