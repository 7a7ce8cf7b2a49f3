"""The HTTP edge every router shares, above the domains: the request's session and the
authenticated client (`deps`), and the ASGI middleware that runs before any route: the
admission limit (`admission`) and the JSON guard (`json_body`). `app.core`, below every
domain, imports none of this (an import contract)."""
