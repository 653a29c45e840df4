"""Configuration: the settings model (settings.py), the YAML documents and their errors
(files.py), the sinks' settings (sinks.py) and the value types they share (values.py)."""
