"""Training jobs: validated at once, run in the background by a bounded pool, durable in the database."""
