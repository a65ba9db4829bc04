#!/bin/sh
# Start Mosquitto with the shipped config; with MQTT_USERNAME and MQTT_PASSWORD set, create a
# password file first and run a copy of the config that requires it.
#
#   MOSQUITTO_CONFIG   the shipped config (default /mosquitto/config/mosquitto.conf)
#   MOSQUITTO_RUN_DIR  where the password file and the derived config go (default /tmp/mosquitto)
set -eu

config="${MOSQUITTO_CONFIG:-/mosquitto/config/mosquitto.conf}"
run_dir="${MOSQUITTO_RUN_DIR:-/tmp/mosquitto}"

if [ -n "${MQTT_USERNAME:-}" ]; then
    if [ -z "${MQTT_PASSWORD:-}" ]; then
        echo "entrypoint: MQTT_USERNAME is set but MQTT_PASSWORD is empty" >&2
        exit 2
    fi
    mkdir -p "$run_dir"
    umask 077
    : > "$run_dir/passwd"
    # -b takes the password as an argument: it is visible only inside this container, briefly.
    mosquitto_passwd -b "$run_dir/passwd" "$MQTT_USERNAME" "$MQTT_PASSWORD"
    # Mosquitto 2 drops root for its own user before reading the password file.
    chown mosquitto "$run_dir/passwd" 2>/dev/null || true
    sed 's/^allow_anonymous true$/allow_anonymous false/' "$config" > "$run_dir/mosquitto.conf"
    echo "password_file $run_dir/passwd" >> "$run_dir/mosquitto.conf"
    config="$run_dir/mosquitto.conf"
    echo "entrypoint: anonymous access off, user $MQTT_USERNAME required" >&2
fi

exec mosquitto -c "$config"
