"""The sans-I/O core: bytes in, events out; calls in, bytes out. No I/O, no clock, no asyncio."""
