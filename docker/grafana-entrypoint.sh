#!/bin/sh
# Grafana's own entrypoint, with InfluxDB 3's token read from the token volume first: the
# provisioned data source (grafana/provisioning/datasources/influxdb3.yaml) takes it from
# INFLUXDB3_TOKEN, as Telegraf does (docker/telegraf-entrypoint.sh).
#
#   TOKEN_FILE          default /var/lib/influxdb3-token/token
#   GRAFANA_ENTRYPOINT  the official image's entrypoint (default /run.sh), which starts Grafana
#                       as the image's user
set -eu

token_file="${TOKEN_FILE:-/var/lib/influxdb3-token/token}"
if [ -z "${INFLUXDB3_TOKEN:-}" ]; then
    if [ ! -r "$token_file" ]; then
        echo "grafana-entrypoint: no INFLUXDB3_TOKEN and no token file at $token_file" >&2
        exit 2
    fi
    INFLUXDB3_TOKEN="$(cat "$token_file")"
    export INFLUXDB3_TOKEN
fi
exec "${GRAFANA_ENTRYPOINT:-/run.sh}" "$@"
