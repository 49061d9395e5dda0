"""Wireshark: the Lua dissector (milagro.lua) and the decryptable demo copy (demo_copy.py)."""
