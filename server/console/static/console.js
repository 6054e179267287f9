// stockgate console: live updates from /console/stream (Server-Sent Events).
// Our own few lines over EventSource (no library). Rows are built as text, never HTML
// from the wire; a door's queue is HTML the server rendered for this session.
// - Doors: each new pass goes on top of its door; a door's quality line and unresolved
//   queue are fetched again when a pass or an unresolved_passes alert concerns it.
// - Movements (first page): rows matching the page's filter go on top of the table.
"use strict";
(function () {
  var live = document.getElementById("live");
  if (!live || !window.EventSource) { return; }
  function show(state, text) { live.dataset.state = state; live.textContent = text; }
  function cell(row, text, cls) {
    var td = document.createElement("td");
    td.textContent = text == null ? "" : String(text);
    if (cls) { td.className = cls; }
    row.appendChild(td);
  }
  function time(m) { return String(m.event_time).replace("T", " ").slice(0, 19); }
  function prepend(body, row) {
    row.className = "new";
    body.insertBefore(row, body.firstChild);
    var keep = parseInt(body.dataset.keep, 10) || 20;
    while (body.rows.length > keep) { body.deleteRow(body.rows.length - 1); }
  }
  function doorOf(readPoint) {
    var doors = document.querySelectorAll("section.door");
    for (var i = 0; i < doors.length; i++) {
      if (doors[i].dataset.readPoint === readPoint) { return doors[i]; }
    }
    return null;
  }
  var pending = {};
  function refreshQueue(door) {
    var readPoint = door.dataset.readPoint;
    if (pending[readPoint]) { return; }
    pending[readPoint] = setTimeout(function () {
      delete pending[readPoint];
      fetch("/doors/queue?read_point=" + encodeURIComponent(readPoint), {credentials: "same-origin"})
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (html) {
          var queue = door.querySelector("div.queue");
          if (html !== null && queue) { queue.innerHTML = html; }
        });
    }, 150);
  }
  function onDoor(m) {
    var door = m.read_point ? doorOf(m.read_point) : null;
    if (!door) { return; }
    var row = document.createElement("tr");
    cell(row, time(m)); cell(row, m.kind); cell(row, m.sku); cell(row, m.quantity);
    cell(row, m.from_location); cell(row, m.to_location);
    cell(row, m.confidence == null ? "" : Number(m.confidence).toFixed(2), "confidence");
    cell(row, m.epc, "epc");
    prepend(door.querySelector("table.recent tbody"), row);
    refreshQueue(door);
  }
  function matches(table, m) {
    var f = table.dataset;
    if (f.fReadPoint && m.read_point !== f.fReadPoint) { return false; }
    if (f.fKind && m.kind !== f.fKind) { return false; }
    if (f.fActor && m.actor !== f.fActor) { return false; }
    if (f.fEpc && m.epc !== f.fEpc) { return false; }
    if (f.fItem && m.sku !== f.fItem && m.gtin !== f.fItem && m.gtin !== ("000000" + f.fItem).slice(-14)) { return false; }
    if (f.fLocation) {
      var under = function (place) { return place === f.fLocation || (place || "").indexOf(f.fLocation + ".") === 0; };
      if (!under(m.from_location) && !under(m.to_location)) { return false; }
    }
    return true;
  }
  function onMovements(m) {
    var table = document.querySelector("table.movements[data-live]");
    if (!table || !matches(table, m)) { return; }
    var row = document.createElement("tr");
    cell(row, time(m)); cell(row, m.kind); cell(row, m.sku); cell(row, m.quantity);
    cell(row, m.from_location); cell(row, m.to_location); cell(row, m.read_point);
    cell(row, m.actor); cell(row, m.epc, "epc");
    prepend(table.querySelector("tbody"), row);
  }
  var source = new EventSource("/console/stream");
  source.onopen = function () { show("live", "live"); };
  source.onerror = function () { show("down", "reconnecting…"); };
  source.addEventListener("movement", function (event) {
    var m = JSON.parse(event.data);
    onDoor(m);
    onMovements(m);
  });
  source.addEventListener("alert", function (event) {
    var change = JSON.parse(event.data);
    var alert = change.alert || {};
    if (alert.kind !== "unresolved_passes") { return; }
    var door = doorOf(alert.subject);
    if (door) { refreshQueue(door); }
  });
}());
