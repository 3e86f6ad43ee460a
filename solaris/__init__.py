"""The top layer: the app factory (`app`), the server and its workers (`server`), the CLI (`cli`,
`operator_cli`, `commands`), the embedded engines (`engines`), and the database and its
migrations (`db`). It wires `proxy/` and `admin/` into one aiohttp app over `runtime/`."""
