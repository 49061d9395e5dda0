"""Captures of our own connections for Wireshark and scapy.

keylog.py        the NSS key log (SSLKEYLOGFILE) the Context writes when asked
recorder.py      a loopback proxy that records each connection's bytes
pcap.py          those bytes as an Ethernet/IP/TCP pcap (scapy), no capture privileges needed
scapy_suites.py  scapy's TLS layer taught our suites, so it dissects and decrypts the true capture

The decryptable demo copy for stock Wireshark lives in interop/wireshark/demo_copy.py, with the
Lua dissector: it rewrites bytes, so it is a demo tool, not part of the library.
"""
