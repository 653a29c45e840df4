"""A Microsoft Graph and Entra ID stand-in (HTTPS) for tests, benchmarks and the demo.

It shares no code with the product beyond the CLI that starts it.
"""
