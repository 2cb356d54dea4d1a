// BizOps Pilot dashboard: copy buttons and the live run view. Loaded from
// /static (CSP script-src 'self'); writes text only, never HTML.
(function () {
  "use strict";

  function setText(el, text) { el.textContent = text == null ? "" : String(text); }

  // Copy buttons: <button data-copy="element-id">.
  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest("button[data-copy]") : null;
    if (!button) return;
    var source = document.getElementById(button.getAttribute("data-copy"));
    if (!source || !navigator.clipboard) return;
    navigator.clipboard.writeText(source.textContent).then(function () {
      var label = button.textContent;
      setText(button, "Copied");
      setTimeout(function () { setText(button, label); }, 1500);
    });
  });

  // Live run view.
  var table = document.getElementById("steps");
  if (!table || table.getAttribute("data-live") !== "true" || !window.EventSource) return;
  var runId = table.getAttribute("data-run-id");
  var live = document.getElementById("live");
  var statusBadge = document.getElementById("run-status");
  var approval = document.getElementById("approval-needed");
  var runError = document.getElementById("run-error");
  var source = new EventSource("/api/v1/runs/" + encodeURIComponent(runId) + "/events");

  function label(status) { return String(status || "").replace(/_/g, " "); }

  function badge(status) {
    var span = document.createElement("span");
    span.className = "badge status-" + String(status || "").replace(/[^a-z_]/g, "");
    setText(span, label(status));
    return span;
  }

  function cell(row, content, header) {
    var td = document.createElement(header ? "th" : "td");
    if (header) td.setAttribute("scope", "row");
    if (content instanceof Node) td.appendChild(content); else setText(td, content);
    row.appendChild(td);
    return td;
  }

  function render(run) {
    statusBadge.className = "badge status-" + String(run.status).replace(/[^a-z_]/g, "");
    statusBadge.setAttribute("data-status", run.status);
    setText(statusBadge, label(run.status));
    approval.hidden = run.status !== "awaiting_approval";
    runError.hidden = !run.error;
    setText(runError, run.error);
    var body = document.createElement("tbody");
    (run.steps || []).forEach(function (s) {
      var row = document.createElement("tr");
      row.setAttribute("data-step", s.step_key);
      var key = document.createElement("code");
      setText(key, s.step_key);
      cell(row, key, true);
      cell(row, s.kind);
      cell(row, badge(s.status));
      cell(row, s.duration_ms ? s.duration_ms + " ms" : "");
      cell(row, s.attempts || "");
      cell(row, s.provider);
      var out = cell(row, "");
      if (s.error) {
        var err = document.createElement("p");
        err.className = "error-message";
        setText(err, s.error);
        out.appendChild(err);
      }
      if (s.output_preview) {
        var pre = document.createElement("pre");
        pre.className = "output";
        pre.tabIndex = 0;
        setText(pre, s.output_preview);
        out.appendChild(pre);
      }
      body.appendChild(row);
    });
    table.replaceChild(body, table.tBodies[0]);
  }

  source.addEventListener("open", function () { setText(live, "Live: updates appear as they happen."); });
  source.addEventListener("snapshot", function (e) {
    try { render(JSON.parse(e.data)); } catch (_) { /* ignore a malformed event */ }
  });
  source.addEventListener("change", function (e) {
    try {
      var change = JSON.parse(e.data);
      if (change.step) setText(live, "Step " + change.step.step_key + ": " + label(change.step.status));
    } catch (_) { /* ignore */ }
  });
  source.addEventListener("end", function (e) {
    source.close();
    setText(live, e.data === "finished" ? "Finished." : "Live updates stopped (" + e.data + "). Reload to resume.");
  });
  source.addEventListener("error", function () {
    if (source.readyState === EventSource.CLOSED) setText(live, "Live updates stopped. Reload to resume.");
  });
})();
