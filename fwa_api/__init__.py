"""The serving side of the FWA platform: FastAPI app, middleware, routes, assistant."""
