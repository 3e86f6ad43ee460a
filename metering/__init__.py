"""Metering, the core: token estimation, the quota engine (Redis), the usage ledger (Postgres),
prices, alerts, users and keys. It knows nothing of HTTP servers and speaks no wire: its services
return domain objects (`User`, `Alert`, `ApiKey`, `UsageRecord`, `AuditEntry`, `SystemSettings`)
and take typed input (`UserChanges`, settings changes by field path). `runtime/` wires it into the
app, and `proxy/` and `admin/` are thin layers over it that build their own JSON."""
