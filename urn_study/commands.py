"""Sub-commands beyond ``train``: each entry adds itself to the parser. Heavy imports stay inside handlers."""
from __future__ import annotations

REGISTER: list = []
