#!/bin/sh
# Telegraf's own entrypoint, with InfluxDB 3's token read from the token volume first.
#
#   TOKEN_FILE           default /var/lib/influxdb3-token/token
#   TELEGRAF_ENTRYPOINT  the official image's entrypoint (default /entrypoint.sh), which drops
#                        root and runs Telegraf, and so hst-processor, as user telegraf
set -eu

token_file="${TOKEN_FILE:-/var/lib/influxdb3-token/token}"
if [ -z "${INFLUXDB3_TOKEN:-}" ]; then
    if [ ! -r "$token_file" ]; then
        echo "telegraf-entrypoint: no INFLUXDB3_TOKEN and no token file at $token_file" >&2
        exit 2
    fi
    INFLUXDB3_TOKEN="$(cat "$token_file")"
    export INFLUXDB3_TOKEN
fi
exec "${TELEGRAF_ENTRYPOINT:-/entrypoint.sh}" "$@"
