"""Publishing metrics to an MQTT broker with paho-mqtt 2.x, surviving a broker that comes and goes.

paho's network thread connects in the background and reconnects with a backoff from 1 s to
30 s; this class adds what a demo needs on top: counts, a status for the panel, and log lines
that say what happened without repeating every second while the broker is away.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from simulator.machine import Machine
from simulator.model import Reading
from simulator.payload import flat_payload, seed_payload

__all__ = ["MqttSink"]

log = logging.getLogger("simulator.mqtt")

RECONNECT_MIN_S = 1
RECONNECT_MAX_S = 30


class MqttSink:
    """Sends one JSON message per machine per tick to ``<topic_prefix>/<machineID>``."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        payload: str = "flat",
        topic_prefix: str = "machine",
        qos: int = 0,
        username: str | None = None,
        password: str | None = None,
        client_id: str = "",
    ) -> None:
        self.broker = f"{host}:{port}"
        self._topic_prefix = topic_prefix.rstrip("/")
        self._qos = qos
        self._build = seed_payload if payload == "seed" else flat_payload
        self._lock = threading.Lock()
        self._closing = False
        self.connected = False
        self.published = 0
        self.dropped = 0
        self.outages = 0
        self._last_failure_log = 0.0
        self._client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
        )
        if username:
            self._client.username_pw_set(username, password)
        self._client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_connect_fail = self._on_connect_fail
        self._client.connect_async(host, port, keepalive=30)
        self._client.loop_start()

    def emit(self, time_ns: int, readings: list[tuple[Machine, Reading]]) -> None:
        for machine, reading in readings:
            body = self._build(
                machine.machine_id, machine.provider, machine.barcode, reading, time_ns
            )
            topic = f"{self._topic_prefix}/{machine.machine_id}"
            info = self._client.publish(topic, json.dumps(body), qos=self._qos)
            with self._lock:
                if info.rc == mqtt.MQTT_ERR_SUCCESS:
                    self.published += 1
                else:
                    # Not connected: a sensor reading is stale by the time the broker is back.
                    self.dropped += 1

    def close(self) -> None:
        with self._lock:
            self._closing = True  # the disconnect that follows is ours, not an outage
        self._client.disconnect()
        self._client.loop_stop()

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {
                "broker": self.broker,
                "connected": self.connected,
                "published": self.published,
                "dropped": self.dropped,
                "outages": self.outages,
            }

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Any,
    ) -> None:
        if reason_code.is_failure:
            # A refusal (bad credentials, not authorised) will not mend itself by retrying
            # faster; paho keeps retrying with its backoff and the log says why.
            log.error("MQTT broker %s refused the connection: %s", self.broker, reason_code)
            return
        with self._lock:
            self.connected = True
        log.info("connected to MQTT broker %s", self.broker)

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Any,
    ) -> None:
        with self._lock:
            was_connected, self.connected = self.connected, False
            lost = was_connected and not self._closing
            if lost:
                self.outages += 1
        if lost:
            log.warning(
                "lost the MQTT broker %s (%s); reconnecting with backoff up to %d s",
                self.broker,
                reason_code,
                RECONNECT_MAX_S,
            )

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        now = time.monotonic()
        if now - self._last_failure_log >= RECONNECT_MAX_S:
            self._last_failure_log = now
            log.warning(
                "cannot reach the MQTT broker %s; retrying with backoff up to %d s",
                self.broker,
                RECONNECT_MAX_S,
            )
