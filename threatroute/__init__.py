"""threatroute's shared vocabulary: record contracts, field validators, feed parsers.

Everything in this package is pure (no Kafka, no network): `enrichers/`, `matchers/` and
`streams/` build on it.
"""
