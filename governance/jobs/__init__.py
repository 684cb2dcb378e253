"""Long work off the request path: jobs, their runner, and their status endpoint."""
