"""Setting values as the text of a shareable link and back (``RunConfig.to_query_params`` /
``from_query_params``): the parsing only; the values are validated by the config that receives them."""

from __future__ import annotations

from typing import Any

from kamoe_viz.errors import ValidationError


def encode_value(value: Any) -> str:
    """A setting's value as link text: lists comma-separated, booleans true/false, None empty."""
    if isinstance(value, (list, tuple)):
        return ",".join(encode_value(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    return str(value)


def decode_scalar(text: str) -> Any:
    """Link text as a bool, int or float when it reads as one, else the text itself (dataset option values)."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def decode_field(field_name: str, text: str, default: Any, name: str) -> Any:
    """Link text as the type of the setting's ``default``; validation of the value happens in the config."""
    if name in ("csv_path", "target"):
        return text or None
    if name == "features":
        return tuple(p for p in text.split(",") if p) or None
    if isinstance(default, bool):
        if text.lower() not in ("true", "false"):
            raise ValidationError(field_name, text, "must be true or false")
        return text.lower() == "true"
    if isinstance(default, tuple):
        parts = [p for p in text.split(",") if p.strip()]
        values = [decode_scalar(p) for p in parts]
        return tuple(values)
    if isinstance(default, (int, float)):
        value = decode_scalar(text)
        if isinstance(value, str):
            raise ValidationError(field_name, text, "must be a number")
        return value
    return text
