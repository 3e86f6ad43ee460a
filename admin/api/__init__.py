"""The JSON API's handlers, one module per resource; each module lists its routes in `ROUTES`."""
