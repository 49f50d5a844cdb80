"""Pure-ASGI middleware (``BaseHTTPMiddleware`` costs most of the throughput and breaks
contextvars). ``fwa_api.app.create_app`` stacks them, outermost first: request context (with the
HTTP metrics, the security headers, and CORS, Starlette's, for requests with an Origin) → rate
limit → routes."""
