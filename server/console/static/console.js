// stockgate console: adds each new pass to its door as the server streams it.
// Our own few lines over EventSource (no library); text only, never HTML from the wire.
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
  var source = new EventSource("/console/stream");
  source.onopen = function () { show("live", "live"); };
  source.onerror = function () { show("down", "reconnecting…"); };
  source.addEventListener("movement", function (event) {
    var m = JSON.parse(event.data);
    if (!m.read_point) { return; }
    var doors = document.querySelectorAll("section.door");
    for (var i = 0; i < doors.length; i++) {
      if (doors[i].dataset.readPoint !== m.read_point) { continue; }
      var body = doors[i].querySelector("table.recent tbody");
      var row = document.createElement("tr");
      row.className = "new";
      cell(row, String(m.event_time).replace("T", " ").slice(0, 19));
      cell(row, m.kind); cell(row, m.sku); cell(row, m.quantity);
      cell(row, m.from_location); cell(row, m.to_location); cell(row, m.epc, "epc");
      body.insertBefore(row, body.firstChild);
      var keep = parseInt(body.dataset.keep, 10) || 20;
      while (body.rows.length > keep) { body.deleteRow(body.rows.length - 1); }
    }
  });
}());
