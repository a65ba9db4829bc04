"""The control panel: a page with every machine's live values and a button per fault kind, and
the JSON API behind it.

API:

- ``GET /api/machines``: machines (id, provider, barcode, state, running faults, last values),
  the fault kinds, and the MQTT connection's status.
- ``PUT /api/machines/<id>/faults/<kind>`` with ``{"active": true|false}``: start or stop a
  fault. Answers the machine as ``GET`` shows it; 404 for an unknown machine or kind.
- ``POST /toggle_machine`` with ``{"id": "machine1", "state": "on"|"off"}``: the seed demo's
  call, switching the seed's fault (``overload``).
- ``GET /api/health``: ``{"status": "ok"}``.

Every call that changes something takes a JSON body, so a page on another site cannot send one
from a visitor's browser without a CORS preflight, which this server never grants. Requests
must name an allowed host in their ``Host`` header (400 otherwise: a DNS-rebinding page cannot
reach the panel under its own name), and bodies over 16 KB are refused (413).

>>> import io
>>> from simulator.labels import LabelLog
>>> from simulator.simulation import Simulation
>>> simulation = Simulation(1, seed=1, start_ns=0, rate=1.0, labels=LabelLog(io.StringIO()))
>>> client = create_app(simulation).test_client()
>>> client.get("/api/health").status_code
200
>>> client.get("/api/health", headers={"Host": "evil.example"}).status_code
400
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from flask import Flask, jsonify, render_template, request
from flask.typing import ResponseReturnValue
from werkzeug.serving import BaseWSGIServer, make_server

from simulator.faults import FAULTS
from simulator.simulation import Simulation

__all__ = ["LOCAL_HOSTS", "PanelServer", "create_app"]

LOCAL_HOSTS = ("localhost", "127.0.0.1")
"""Host names the panel always answers to. (IPv6 literals cannot be listed: Werkzeug's check
cuts a name at its first colon.)"""
MAX_BODY_BYTES = 16 * 1024  # the API's bodies are a few dozen bytes


def create_app(
    simulation: Simulation,
    mqtt_status: Callable[[], dict[str, Any]] | None = None,
    allowed_hosts: Sequence[str] = (),
) -> Flask:
    """The panel's Flask application for ``simulation``, answering to ``localhost``,
    ``127.0.0.1`` and ``allowed_hosts`` (names, IPv4 addresses, ``.suffix`` for subdomains)."""
    app = Flask(__name__)
    # Flask checks the Host header against these on every request (400 when it matches none).
    app.config["TRUSTED_HOSTS"] = [*LOCAL_HOSTS, *allowed_hosts]
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES

    def machine_view(machine_id: str) -> dict[str, Any]:
        snapshot = simulation.snapshot()
        return next(m for m in snapshot["machines"] if m["id"] == machine_id)

    def switch(machine_id: str, kind: str, active: Any) -> ResponseReturnValue:
        if not isinstance(active, bool):
            return jsonify(error="body must be JSON with a boolean 'active'"), 400
        if machine_id not in simulation.machines:
            return jsonify(error=f"no machine {machine_id}"), 404
        if kind not in FAULTS:
            return jsonify(error=f"no fault kind {kind}; kinds: {', '.join(FAULTS)}"), 404
        simulation.set_fault(machine_id, kind, active, source="api")
        return jsonify(machine_view(machine_id))

    @app.get("/")
    def index() -> ResponseReturnValue:
        return render_template("panel.html", faults=FAULTS.values())

    @app.get("/api/health")
    def health() -> ResponseReturnValue:
        return jsonify(status="ok")

    @app.get("/api/machines")
    def machines() -> ResponseReturnValue:
        snapshot = simulation.snapshot()
        snapshot["faults"] = [
            {"kind": fault.kind, "field": fault.field, "description": fault.description}
            for fault in FAULTS.values()
        ]
        snapshot["mqtt"] = mqtt_status() if mqtt_status else None
        return jsonify(snapshot)

    @app.put("/api/machines/<machine_id>/faults/<kind>")
    def set_fault(machine_id: str, kind: str) -> ResponseReturnValue:
        body = request.get_json(silent=True)
        return switch(machine_id, kind, body.get("active") if isinstance(body, dict) else None)

    @app.post("/toggle_machine")
    def toggle_machine() -> ResponseReturnValue:
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or body.get("state") not in ("on", "off"):
            return jsonify(error='body must be JSON like {"id": "machine1", "state": "on"}'), 400
        response = switch(str(body.get("id")), "overload", body["state"] == "on")
        return response

    return app


class PanelServer:
    """The panel served from a background thread (werkzeug's threaded server)."""

    def __init__(self, app: Flask, host: str, port: int) -> None:
        self._server: BaseWSGIServer = make_server(host, port, app, threaded=True)
        self.port = self._server.server_port
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="panel", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._thread.join(timeout=5)
