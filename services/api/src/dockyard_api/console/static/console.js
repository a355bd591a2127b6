// Dockyard console: small progressive enhancement, no library, no inline code (CSP).
// - forms with data-confirm ask before they are sent;
// - #live[data-events-url] follows the deployment's events (SSE): each one is added to the
//   timeline, and the parts of the page it changes are fetched again;
// - [data-refresh-url] is fetched again every data-refresh-s seconds (traffic charts);
// - .logs with "follow" ticked fetches its endpoint's logs every 2 s;
// - "Copy" copies the curl command.
"use strict";

function fetchInto(url, element) {
  return fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } })
    .then(function (response) {
      if (!response.ok) { throw new Error(response.status + " " + url); }
      return response.text();
    })
    .then(function (html) { element.innerHTML = html; });
}

function confirmations() {
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) { event.preventDefault(); }
  });
}

function addToTimeline(entry) {
  var list = document.getElementById("timeline");
  if (!list) { return; }
  var item = document.createElement("li");
  var time = document.createElement("time");
  time.textContent = entry.time;
  var type = document.createElement("code");
  type.textContent = entry.type;
  item.appendChild(time);
  item.appendChild(document.createTextNode(" "));
  item.appendChild(type);
  item.appendChild(document.createTextNode(" " + entry.summary));
  list.insertBefore(item, list.firstChild);
  while (list.children.length > 100) { list.removeChild(list.lastChild); }
}

function followEvents() {
  var live = document.getElementById("live");
  if (!live || !live.getAttribute("data-events-url")) { return; }
  var state = document.getElementById("live-state");
  var liveUrl = live.getAttribute("data-live-url");
  var reloadOn = live.getAttribute("data-reload-on-event");
  var pending = null;
  var source = new EventSource(live.getAttribute("data-events-url"));
  source.onopen = function () { if (state) { state.textContent = "live"; } };
  source.onerror = function () { if (state) { state.textContent = "reconnecting…"; } };
  source.addEventListener("change", function (message) {
    var entry = JSON.parse(message.data);
    addToTimeline(entry);
    if (reloadOn && entry.summary.indexOf(reloadOn + ":") === 0 && entry.type.indexOf("version.") === 0) {
      window.clearTimeout(pending);
      pending = window.setTimeout(function () { window.location.reload(); }, 300);
    }
    if (liveUrl) {
      window.clearTimeout(pending);
      pending = window.setTimeout(function () { fetchInto(liveUrl, live); }, 150);
    }
  });
}

function refreshers() {
  document.querySelectorAll("[data-refresh-url]").forEach(function (element) {
    var seconds = parseFloat(element.getAttribute("data-refresh-s") || "5");
    window.setInterval(function () {
      fetchInto(element.getAttribute("data-refresh-url"), element).catch(function () {});
    }, seconds * 1000);
  });
}

function followLogs() {
  document.querySelectorAll(".logs").forEach(function (block) {
    var box = block.querySelector(".follow");
    var body = block.querySelector(".logs-body");
    var timer = null;
    box.addEventListener("change", function () {
      window.clearInterval(timer);
      if (box.checked) {
        var load = function () {
          fetchInto(block.getAttribute("data-logs-url"), body).catch(function () {});
        };
        load();
        timer = window.setInterval(load, 2000);
      }
    });
  });
}

function copyButtons() {
  document.querySelectorAll("button.copy").forEach(function (button) {
    button.addEventListener("click", function () {
      var source = document.getElementById(button.getAttribute("data-copy"));
      if (!source || !navigator.clipboard) { return; }
      navigator.clipboard.writeText(source.textContent).then(function () {
        button.textContent = "Copied";
      });
    });
  });
}

document.addEventListener("DOMContentLoaded", function () {
  confirmations();
  followEvents();
  refreshers();
  followLogs();
  copyButtons();
});
