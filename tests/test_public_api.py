import milagro_tls

EXPECTED = ["ApplicationData", "Connection", "ConnectionClosed", "Context", "ConnectionDead", "ConnectionFailed",
            "HandshakeComplete", "HandshakeConfig", "HandshakeError", "LocalIdentity", "MilagroError",
            "NEED_DATA", "Role", "TrustEntry", "TrustStore", "__version__"]


def test_public_names_are_pinned():
    assert sorted(milagro_tls.__all__) == sorted(EXPECTED)


def test_every_public_name_exists():
    for name in milagro_tls.__all__:
        assert hasattr(milagro_tls, name), name
