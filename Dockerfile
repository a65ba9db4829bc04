# Telegraf with hst-processor: the official image (Debian) plus Python and this package.
# Telegraf's entrypoint runs Telegraf, and so hst-processor, as user telegraf.
FROM telegraf:1.38

RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*

COPY pyproject.toml README.md /src/
COPY hst_processor /src/hst_processor
RUN python3 -m venv /opt/hst-processor \
    && /opt/hst-processor/bin/pip install --no-cache-dir /src \
    && ln -s /opt/hst-processor/bin/hst-processor /usr/local/bin/hst-processor \
    && rm -rf /src

# Model state: a named volume mounted here starts with this directory's owner.
RUN mkdir -p /var/lib/hst-processor && chown telegraf:telegraf /var/lib/hst-processor

COPY docker/with-influxdb3-token.sh /usr/local/bin/with-influxdb3-token.sh
ENTRYPOINT ["/usr/local/bin/with-influxdb3-token.sh", "/entrypoint.sh"]
CMD ["telegraf"]
