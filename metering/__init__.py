"""Metering: token estimation, the quota engine (Redis), the usage ledger (Postgres), prices and
alerts. It knows nothing of HTTP; `proxy` and `admin` are thin layers over it."""
