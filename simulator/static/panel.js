// Polls the simulator's API once a second and redraws the table; a fault button switches its
// fault with PUT /api/machines/<id>/faults/<kind> and redraws from the answer.
"use strict";

const FIELDS = ["load", "power", "temperature", "vibration"];
let faultKinds = [];

function cell(row, text, className) {
  const td = row.insertCell();
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function renderMachine(row, machine) {
  row.replaceChildren();
  row.dataset.machine = machine.id;
  const name = row.insertCell();
  name.textContent = machine.id;
  name.title = `${machine.provider}, barcode ${machine.barcode}`;
  cell(row, machine.state, `state state-${machine.state}`);
  for (const field of FIELDS) {
    const value = machine.values ? machine.values[field] : null;
    cell(row, value === null ? "–" : value.toFixed(2), `value ${field}`);
  }
  const buttons = row.insertCell();
  for (const fault of faultKinds) {
    const running = machine.faults.includes(fault.kind);
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = fault.kind;
    button.title = fault.description;
    button.dataset.machine = machine.id;
    button.dataset.kind = fault.kind;
    button.setAttribute("aria-pressed", String(running));
    button.addEventListener("click", () => switchFault(machine.id, fault.kind, !running));
    buttons.appendChild(button);
  }
}

function rowFor(machineId) {
  const body = document.querySelector("#machines tbody");
  return body.querySelector(`tr[data-machine="${machineId}"]`) || body.insertRow();
}

async function switchFault(machineId, kind, active) {
  const response = await fetch(`/api/machines/${machineId}/faults/${kind}`, {
    method: "PUT",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ active }),
  });
  if (response.ok) renderMachine(rowFor(machineId), await response.json());
}

async function refresh() {
  const status = document.getElementById("status");
  try {
    const response = await fetch("/api/machines");
    const snapshot = await response.json();
    faultKinds = snapshot.faults;
    for (const machine of snapshot.machines) renderMachine(rowFor(machine.id), machine);
    const mqtt = snapshot.mqtt;
    const link = mqtt ? (mqtt.connected ? `MQTT ${mqtt.broker} connected`
                                        : `MQTT ${mqtt.broker} unreachable, retrying`)
                      : "printing line protocol";
    status.textContent = `${snapshot.time || "starting"} · ${link}`;
    status.className = mqtt && !mqtt.connected ? "offline" : "";
  } catch (error) {
    status.textContent = "simulator not answering";
    status.className = "offline";
  }
}

refresh();
setInterval(refresh, 1000);
