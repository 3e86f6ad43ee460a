"""The LLM API surface LibreChat calls (`/v1/*`), over the metering core. Independent of `admin/`.

Every metered request goes through the same steps, one module each, listed in `handlers`:

    identify → estimate → admit → forward → (relay) → settle → record

- `identify` — the key (Bearer, `x-api-key`, `api-key`) and the end user (header, then the body
  fields the dialect names); no spending path is served without one.
- `estimate` — the prompt tokens and the completion allowance: the figure admission reserves.
- `admit` — the atomic reservation in Redis, or a refusal in the API's error shape.
- `forward` — the request sent to LiteLLM (`upstream`, over the lean client in `http1`).
- `relay` — the answer passed on, whole or as server-sent events (`sse`), with `notices`.
- `settle` — the bill: reported usage, else the estimate and the counted answer text.
- `record` — the reservation swapped for the bill and the ledger event written, exactly once.

What differs between APIs lives in `dialects/`, one module per API: chat completions, legacy
completions, embeddings, Anthropic's Messages, OpenAI's Responses, and any other `/v1` path.
`exchange` holds one request's state; `errors` and `wording` are what clients and users read.
"""
