#!/bin/sh
# Provision InfluxDB 3's admin token once, before the server's first start.
#
# The token is INFLUXDB3_ADMIN_TOKEN from .env when set, else a random one. It is written to the
# token volume twice: as the offline admin token file `influxdb3 serve --admin-token-file` reads,
# and as plain text for Telegraf and for you (`docker compose exec influxdb3 cat ...`). Once
# written it is kept: changing .env later does not change the server's token.
#
#   TOKEN_DIR  where to write (default /var/lib/influxdb3-token, the token volume)
set -eu

dir="${TOKEN_DIR:-/var/lib/influxdb3-token}"
if [ -s "$dir/admin-token.json" ] && [ -s "$dir/token" ]; then
    echo "influxdb3-token: token already provisioned"
    exit 0
fi

token="${INFLUXDB3_ADMIN_TOKEN:-}"
if [ -z "$token" ]; then
    # 32 random bytes, URL-safe base64, with InfluxDB 3's token prefix.
    token="apiv3_$(head -c 32 /dev/urandom | base64 | tr -d '\n=' | tr '+/' '-_')"
fi
case "$token" in
    apiv3_*) ;;
    *) echo "influxdb3-token: INFLUXDB3_ADMIN_TOKEN must start with apiv3_" >&2; exit 2 ;;
esac

mkdir -p "$dir"
# Readable by the influxdb3 and telegraf users (different images, different uids); the volume
# is mounted by those two containers only.
umask 022
printf '{"token": "%s", "name": "_admin"}\n' "$token" > "$dir/admin-token.json.new"
printf '%s\n' "$token" > "$dir/token.new"
mv "$dir/admin-token.json.new" "$dir/admin-token.json"
mv "$dir/token.new" "$dir/token"
echo "influxdb3-token: admin token written"
