"""milagro-tls: TLS 1.2 whose peers are authenticated by Bitcoin anchors, not certificates."""
from .errors import MilagroError

__version__ = "0.1.0"

__all__ = ["MilagroError", "__version__"]
