"""Health: the checks of what the API depends on, and the route that reports them."""
