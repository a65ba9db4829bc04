"""A stand-in for Telegraf's ``json`` input parser plus its line-protocol serializer, driven by
the settings in ``telegraf.conf``.

It reproduces what the flat payload needs (Telegraf's plugins/parsers/json, documented in
``../shared/docs/telegraf-execd.md`` and the parser's README): every JSON number becomes a float
field; strings are dropped unless listed in ``tag_keys`` (then tags); ``json_time_key`` is taken
out of the fields and read in ``json_time_format`` (``unix_ms`` here); ``name_override`` names
the metric; ``mqtt_consumer`` adds the topic as a tag unless ``topic_tag`` is empty. Then the
metric is printed as Telegraf's serializer does: tags sorted, floats in shortest form.

It does not reproduce nested objects, arrays, ``json_string_fields``, other time formats or
``json_v2``; a payload that uses them is refused rather than guessed at.
"""

from __future__ import annotations

import json
from typing import Any

from hst_processor.lineproto import escape_field_key, escape_tag, format_float

__all__ = ["telegraf_line"]

_TIME_UNITS_NS = {"unix": 1_000_000_000, "unix_ms": 1_000_000, "unix_us": 1_000, "unix_ns": 1}


def telegraf_line(topic: str, payload: bytes, settings: dict[str, Any]) -> str:
    """The line Telegraf hands ``processors.execd`` for one MQTT message."""
    document = json.loads(payload)
    if not isinstance(document, dict):
        raise NotImplementedError("only a flat JSON object is modelled")
    time_key = settings.get("json_time_key", "")
    time_format = settings.get("json_time_format", "")
    tag_keys = set(settings.get("tag_keys", []))
    tags: dict[str, str] = {}
    fields: dict[str, float] = {}
    timestamp: int | None = None
    for key, value in document.items():
        if key == time_key:
            timestamp = int(float(value) * _TIME_UNITS_NS[time_format])
        elif isinstance(value, (dict, list)):
            raise NotImplementedError(f"{key}: nested JSON is not modelled")
        elif key in tag_keys:
            tags[key] = str(value)
        elif isinstance(value, bool):
            continue  # booleans are dropped like strings
        elif isinstance(value, (int, float)):
            fields[key] = float(value)
        # other strings: dropped
    topic_tag = settings.get("topic_tag", "topic")
    if topic_tag:
        tags[topic_tag] = topic
    if timestamp is None:
        raise NotImplementedError("a payload without its time key would take the arrival time")
    name = settings.get("name_override") or "mqtt_consumer"
    series = name + "".join(
        f",{escape_tag(key)}={escape_tag(value)}" for key, value in sorted(tags.items()) if value
    )
    field_text = ",".join(
        f"{escape_field_key(key)}={format_float(value)}" for key, value in fields.items()
    )
    return f"{series} {field_text} {timestamp}"
