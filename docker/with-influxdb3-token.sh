#!/bin/sh
# An image's own entrypoint, run with InfluxDB 3's token read from the token volume first:
# Telegraf's outputs.influxdb_v3 and Grafana's provisioned data source both take it from
# INFLUXDB3_TOKEN. The arguments are the command to run: the image's entrypoint and its own
# arguments (Telegraf's /entrypoint.sh, which drops root and runs Telegraf, and so
# hst-processor, as user telegraf; Grafana's /run.sh).
#
#   TOKEN_FILE  default /var/lib/influxdb3-token/token
#   INFLUXDB3_TOKEN, when set, is used as it is
set -eu

token_file="${TOKEN_FILE:-/var/lib/influxdb3-token/token}"
if [ -z "${INFLUXDB3_TOKEN:-}" ]; then
    if [ ! -r "$token_file" ]; then
        echo "with-influxdb3-token: no INFLUXDB3_TOKEN and no token file at $token_file" >&2
        exit 2
    fi
    INFLUXDB3_TOKEN="$(cat "$token_file")"
    export INFLUXDB3_TOKEN
fi
if [ "$#" -eq 0 ]; then
    echo "with-influxdb3-token: no command to run" >&2
    exit 2
fi
exec "$@"
