"""The thin IO layer that makes the sans-IO connection look like Python's ``ssl``."""
