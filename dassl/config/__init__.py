from .defaults import get_cfg_default
from .keys import get_key, set_key

__all__ = ["get_cfg_default", "get_key", "set_key"]
