"""The panel's JSON API through Flask's test client (the browser test drives the page)."""

from __future__ import annotations

import io

import pytest
from flask.testing import FlaskClient

from simulator.labels import LabelLog, parse_labels
from simulator.panel import create_app
from simulator.simulation import Simulation


@pytest.fixture
def labels() -> io.StringIO:
    return io.StringIO()


@pytest.fixture
def simulation(labels: io.StringIO) -> Simulation:
    simulation = Simulation(2, seed=1, start_ns=0, rate=1.0, labels=LabelLog(labels))
    simulation.tick(0)
    return simulation


@pytest.fixture
def client(simulation: Simulation) -> FlaskClient:
    return create_app(simulation, lambda: {"broker": "test:1883", "connected": True}).test_client()


def test_machines_lists_identity_values_faults_and_the_broker(client: FlaskClient) -> None:
    body = client.get("/api/machines").get_json()
    assert [m["id"] for m in body["machines"]] == ["machine1", "machine2"]
    first = body["machines"][0]
    assert first["state"] == "normal" and first["faults"] == []
    assert set(first["values"]) == {"load", "power", "temperature", "vibration"}
    assert [f["kind"] for f in body["faults"]] == [
        "overload", "bearing", "cooling", "spike", "stuck", "decoupling",
    ]  # fmt: skip
    assert body["mqtt"] == {"broker": "test:1883", "connected": True}
    assert body["time"] == "1970-01-01T00:00:00.000000000Z"


def test_put_starts_and_stops_a_fault_from_the_next_metric(
    client: FlaskClient, simulation: Simulation, labels: io.StringIO
) -> None:
    started = client.put("/api/machines/machine2/faults/cooling", json={"active": True})
    assert started.status_code == 200
    assert started.get_json()["faults"] == ["cooling"]
    assert simulation.machines["machine2"].faults["cooling"].started_ns == 1_000_000_000
    again = client.put("/api/machines/machine2/faults/cooling", json={"active": True})
    assert again.status_code == 200  # idempotent: still one fault, one label
    simulation.tick(1_000_000_000)
    stopped = client.put("/api/machines/machine2/faults/cooling", json={"active": False})
    assert stopped.get_json()["state"] == "normal"
    (label,) = parse_labels(labels.getvalue())
    assert (label.kind, label.source, label.start_ns, label.end_ns) == (
        "cooling", "api", 1_000_000_000, 2_000_000_000,
    )  # fmt: skip


def test_the_seed_toggle_switches_the_overload(client: FlaskClient, simulation: Simulation) -> None:
    on = client.post("/toggle_machine", json={"id": "machine1", "state": "on"})
    assert on.status_code == 200 and on.get_json()["faults"] == ["overload"]
    off = client.post("/toggle_machine", json={"id": "machine1", "state": "off"})
    assert off.get_json()["faults"] == []


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "error"),
    [
        ("put", "/api/machines/machine9/faults/spike", {"active": True}, 404, "no machine"),
        ("put", "/api/machines/machine1/faults/melt", {"active": True}, 404, "no fault kind melt"),
        ("put", "/api/machines/machine1/faults/spike", {"active": "yes"}, 400, "boolean 'active'"),
        ("put", "/api/machines/machine1/faults/spike", None, 400, "boolean 'active'"),
        ("post", "/toggle_machine", {"id": "machine1", "state": "maybe"}, 400, "state"),
        ("post", "/toggle_machine", {"id": "machine7", "state": "on"}, 404, "no machine"),
    ],
)
def test_bad_calls_are_refused_with_a_reason(
    client: FlaskClient,
    method: str,
    path: str,
    body: object,
    status: int,
    error: str,
    simulation: Simulation,
) -> None:
    response = getattr(client, method)(path, json=body) if body else getattr(client, method)(path)
    assert response.status_code == status
    assert error in response.get_json()["error"]
    assert all(not machine.faults for machine in simulation.machines.values())


def test_a_form_post_from_another_site_cannot_switch_a_fault(client: FlaskClient) -> None:
    response = client.post("/toggle_machine", data={"id": "machine1", "state": "on"})
    assert response.status_code == 400


def test_the_page_offers_every_fault_kind(client: FlaskClient) -> None:
    page = client.get("/").get_data(as_text=True)
    assert "panel.js" in page
    for kind in ("overload", "bearing", "cooling", "spike", "stuck", "decoupling"):
        assert f"<dt>{kind}</dt>" in page
    assert client.get("/api/health").get_json() == {"status": "ok"}
