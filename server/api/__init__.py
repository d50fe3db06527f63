"""HTTP endpoints, and the table that routes and documents them."""
