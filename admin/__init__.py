"""The admin surface: the seed's JSON API under `/api` (`routes`, `api/`), the server-rendered
panel under `/admin` (`panel`, `pages/`) and its live feed (`sse`). Independent of `proxy/`."""
