#!/bin/sh
# Healthy when the broker answers a subscription to its own uptime topic within 5 s, with the
# stack's credentials when it requires them.
set -eu
if [ -n "${MQTT_USERNAME:-}" ]; then
    set -- -u "$MQTT_USERNAME" -P "${MQTT_PASSWORD:-}"
fi
exec mosquitto_sub -h 127.0.0.1 -p "${MQTT_PORT:-1883}" -t '$SYS/broker/uptime' -C 1 -W 5 "$@" >/dev/null
