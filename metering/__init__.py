"""Metering, the core: token estimation, the quota engine (Redis), the usage ledger (Postgres),
prices, alerts, users and keys. It knows nothing of HTTP servers; `runtime/` wires it into the
app, and `proxy/` and `admin/` are thin layers over it."""
