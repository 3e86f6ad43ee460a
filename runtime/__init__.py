"""The shared base of the proxy and the admin: what both need and neither owns.

Settings (`settings`), the typed app state (`appkeys`), the lifetimes of the metering services an
app holds (`lifetimes`: one `cleanup_ctx` per service, background loops included), the shapes
the live feed gives what the services announce (`feed`, filled in by the admin), Prometheus
metrics, this process's live traffic, health probes and network helpers. It sits above
`metering/` (the core, which knows nothing of HTTP servers) and below `proxy/` and `admin/`.
"""
