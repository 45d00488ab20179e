"""Showing a config to a person: secrets masked (`kaiju.masking`), YAML out (the ``config`` command)."""

from __future__ import annotations

from typing import Any

import yaml

from kaiju.masking import MASK, is_secret_key, mask_secrets, mask_text

__all__ = ["MASK", "dump_yaml", "is_secret_key", "mask_secrets", "mask_text"]


def dump_yaml(data: Any) -> str:
    """`data` as block-style YAML, keys in their given order."""
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False)
