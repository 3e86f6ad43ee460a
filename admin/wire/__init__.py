"""The seed's JSON shapes (camelCase, its TypeScript types) built from the core's domain objects,
and the seed's request bodies parsed into the core's typed input. Only the admin speaks this wire;
`metering/` never sees a camelCase name.
"""
