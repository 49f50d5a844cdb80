"""The browser's sign-in: a bearer token exchanged once for a server-side session cookie."""
