// Live enrolment status: polls the JSON API with the session cookie (same origin, GET needs
// no CSRF token) and updates the table in place. Plain script, no build step; text only
// (textContent), so nothing from the server is ever parsed as HTML.
(function () {
  "use strict";
  var table = document.getElementById("enrolments");
  var note = document.getElementById("poll-status");
  if (!table) { return; }
  var url = table.dataset.pollUrl;
  var interval = parseInt(table.dataset.interval, 10) || 2000;
  var body = table.tBodies[0];
  var columns = ["id", "name", "group", "status", "txid", "installed", "updated"];

  function cell(row, name) { return row.querySelector("td." + name); }

  function newRow(enrolment) {
    var row = document.createElement("tr");
    row.id = "enrolment-" + enrolment.id;
    row.dataset.id = enrolment.id;
    columns.forEach(function (name) {
      var td = document.createElement("td");
      td.className = name;
      if (name === "id" || name === "txid") { td.appendChild(document.createElement("code")); }
      row.appendChild(td);
    });
    body.insertBefore(row, body.firstChild);
    return row;
  }

  function setText(td, text) {
    var target = td.firstElementChild || td;
    if (target.textContent !== text) { target.textContent = text; }
  }

  function show(enrolment) {
    var row = document.getElementById("enrolment-" + enrolment.id) || newRow(enrolment);
    setText(cell(row, "id"), enrolment.id);
    setText(cell(row, "name"), enrolment.name || "");
    setText(cell(row, "group"), enrolment.group || "");
    var status = cell(row, "status");
    setText(status, enrolment.status);
    status.className = "status status-" + enrolment.status;
    setText(cell(row, "txid"), enrolment.txid || "");
    setText(cell(row, "installed"), enrolment.installed_version === null ? "" : String(enrolment.installed_version));
    setText(cell(row, "updated"), String(enrolment.updated));
  }

  function poll() {
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (response) {
        if (response.status === 401) { throw new Error("session expired: log in again"); }
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.json();
      })
      .then(function (doc) {
        doc.enrolments.slice().reverse().forEach(show);
        note.textContent = "Live: updated " + new Date().toLocaleTimeString() + ".";
        note.dataset.polls = String((parseInt(note.dataset.polls, 10) || 0) + 1);
        window.setTimeout(poll, interval);
      })
      .catch(function (error) {
        note.textContent = "Live updates stopped: " + error.message;
        if (!/session expired/.test(error.message)) { window.setTimeout(poll, interval * 2); }
      });
  }
  window.setTimeout(poll, interval);
}());
