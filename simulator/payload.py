"""What a machine's metric looks like on the wire: MQTT JSON (flat or the seed's) or line protocol.

The flat payload is one JSON object with the metadata, the time in milliseconds and the four
readings; Telegraf's ``json`` parser turns it into one metric with four fields (``telegraf.conf``).
The seed's payload nests the readings in a ``data`` array of one-key objects; Telegraf's
``json_v2`` parser turns that into four one-field metrics (the alternative in ``telegraf.conf``).

>>> from simulator.model import Reading
>>> reading = Reading(load=70.0, power=210.5, temperature=37.25, vibration=85.0)
>>> line = line_protocol("machine_data", "machine1", "Acme", "4006381333931", reading,
...                      1_767_225_600_000_000_000)
>>> print(line.replace(" ", "\\n"))
machine_data,barcode=4006381333931,machineID=machine1,provider=Acme
load=70,power=210.5,temperature=37.25,vibration=85
1767225600000000000
>>> flat_payload("machine1", "Acme", "4006381333931", reading, 1_767_225_600_000_000_000)["time"]
1767225600000
"""

from __future__ import annotations

from typing import Any

from hst_processor.lineproto import escape_field_key, escape_tag, format_float
from simulator.model import Reading

__all__ = ["PAYLOADS", "flat_payload", "line_protocol", "seed_payload"]

PAYLOADS = ("flat", "seed")


def flat_payload(
    machine_id: str, provider: str, barcode: str, reading: Reading, time_ns: int
) -> dict[str, Any]:
    """One JSON object per metric: metadata, ``time`` (Unix milliseconds) and the readings.

    Milliseconds because Telegraf's JSON parsers read numbers as 64-bit floats, which hold a
    millisecond timestamp exactly and a nanosecond one only to about 256 ns.
    """
    return {
        "machineID": machine_id,
        "provider": provider,
        "barcode": barcode,
        "time": time_ns // 1_000_000,
        **reading.fields(),
    }


def seed_payload(
    machine_id: str, provider: str, barcode: str, reading: Reading, time_ns: int
) -> dict[str, Any]:
    """The seed demo's shape: the readings as a ``data`` array of one-key objects."""
    return {
        "machineID": machine_id,
        "provider": provider,
        "barcode": barcode,
        "time": time_ns // 1_000_000,
        "data": [{name: value} for name, value in reading.fields().items()],
    }


def line_protocol(
    measurement: str, machine_id: str, provider: str, barcode: str, reading: Reading, time_ns: int
) -> str:
    """The metric as Telegraf would print it after parsing the flat payload: tags sorted by
    key, floats in Telegraf's shortest form, a nanosecond timestamp."""
    tags = {"barcode": barcode, "machineID": machine_id, "provider": provider}
    series = escape_measurement(measurement) + "".join(
        f",{escape_tag(key)}={escape_tag(value)}" for key, value in sorted(tags.items()) if value
    )
    fields = ",".join(
        f"{escape_field_key(name)}={format_float(value)}"
        for name, value in reading.fields().items()
    )
    return f"{series} {fields} {time_ns}"


def escape_measurement(text: str) -> str:
    """Escape a measurement name as Telegraf's serializer does (commas and spaces only)."""
    return text.replace(",", "\\,").replace(" ", "\\ ")
