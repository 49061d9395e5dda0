import milagro_tls


def test_public_names_are_pinned():
    assert sorted(milagro_tls.__all__) == ["MilagroError", "__version__"]
