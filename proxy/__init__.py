"""The LLM API surface LibreChat calls (`/v1/*`): each request goes through the steps identify →
estimate → admit → forward → settle → record, over the metering core. Independent of `admin/`."""
