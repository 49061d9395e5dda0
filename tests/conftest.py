"""Shared fixtures. This file's directory is on sys.path, so tests import ``helpers.*``."""
