"""Configuration: the settings model (settings.py, its sections by purpose in roles.py,
tenants.py and actions.py), the YAML documents and their errors (files.py), the loader
(loader.py), the sinks' settings (sinks.py), and what they share (types.py, values.py)."""
