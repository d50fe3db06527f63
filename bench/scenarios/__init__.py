"""The benchmark scenarios, by name: each is ``async def scenario(run: Run) -> None``."""
