"""The admin surface: the seed's JSON API under `/api` (`routes`, `api/`), the server-rendered
panel under `/admin` (`panel`, `pages/`) and its live feed (`sse`). Independent of `proxy/`.

Both share one guard (`access`), one mapping of domain errors to statuses (`errors`), and the
seed's shapes (`wire/`: camelCase JSON from the core's domain objects, and request bodies parsed
into its typed input)."""
