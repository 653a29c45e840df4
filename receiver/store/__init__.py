"""Redis storage: the client factory (client.py), every key name (keys.py), the subscription
registry (registry.py) and the typed stream entries (entries.py)."""
