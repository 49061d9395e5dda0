"""Captures of our own connections for Wireshark: pcap files, key logs, a demo copy."""
