-- Requests whose model had no known price (issue 14 #5). Their cost is recorded as 0, so every
-- cost total must also say how many requests and tokens it leaves out. They are few (a model
-- missing from the price table), so a partial index finds them in a date range without a pass
-- over the ledger, and it costs nothing to the writer for the priced rows.
CREATE INDEX token_usage_unpriced ON token_usage (created_at) INCLUDE (user_id, model, total_tokens)
    WHERE NOT price_known;
