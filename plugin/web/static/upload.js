// The upload page (templates/upload.html). Files dropped on the box or chosen in its field
// go to POST /upload/analyze one at a time, in the order given, so the page never holds
// more than one place in the server's upload queue. Each file shows its state (queued,
// analysing, waiting, done, error) and then its result: verdict, scenario, timeline and
// segments. A busy server (429, 503) is waited for as its Retry-After says, then tried again.
// Text that came from a file or the server is only ever set with textContent.
// Served from /static: the page's CSP allows no inline script, and nothing is loaded from elsewhere.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  var setup = JSON.parse(document.getElementById("upload-setup").textContent);
  var M = setup.messages;
  var form = document.getElementById("upload-form");
  var input = document.getElementById("upload-files");
  var zone = document.getElementById("drop-zone");
  var list = document.getElementById("upload-results");
  var csvButton = document.getElementById("upload-csv");
  var announce = document.getElementById("upload-announce");
  var SVG = "http://www.w3.org/2000/svg";
  var MAX_TRIES = 30; // busy answers waited out per file before it is marked an error
  var items = [];
  var running = false;

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function svgEl(tag, attrs) {
    var e = document.createElementNS(SVG, tag);
    Object.keys(attrs).forEach(function (k) { e.setAttribute(k, String(attrs[k])); });
    return e;
  }
  function fmt(message, vars) {
    return message.replace(/%\((\w+)\)s/g, function (m, k) { return k in vars ? String(vars[k]) : m; });
  }
  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function clock(seconds) { var s = Math.floor(seconds); return pad(Math.floor(s / 60)) + ":" + pad(s % 60); }
  function named(names, code) { return code === null || code === undefined ? "-" : (names[code] || String(code)); }
  function num(x, digits) { return typeof x === "number" ? x.toFixed(digits) : "-"; }
  function sleep(ms) { return new Promise(function (done) { setTimeout(done, ms); }); }

  function setState(item, status, label) {
    item.status = status;
    item.state.textContent = label;
    item.state.className = "upload-state state-" + status;
    announce.textContent = fmt(M.status_of, {name: item.file.name, status: label});
  }

  function add(files) {
    Array.prototype.forEach.call(files, function (file) {
      var item = {file: file, channels: form.elements.channels.value, scenario: form.elements.scenario.value};
      item.li = el("li", "upload-item");
      var head = el("p", "upload-head");
      head.appendChild(el("strong", "upload-name", file.name));
      head.appendChild(document.createTextNode(" "));
      item.state = el("span", "upload-state");
      head.appendChild(item.state);
      item.li.appendChild(head);
      item.body = el("div", "upload-body");
      item.li.appendChild(item.body);
      list.appendChild(item.li);
      items.push(item);
      // The limit is on the whole request: leave room for the form around the file.
      if (file.size + 16384 > setup.max_bytes) fail(item, M.too_big + " (" + setup.max_size + ")");
      else setState(item, "queued", M.queued);
    });
    run();
  }

  function fail(item, message) {
    setState(item, "error", M.error);
    item.body.textContent = "";
    item.body.appendChild(el("p", "error", message));
  }

  async function run() {
    if (running) return;
    running = true;
    try {
      for (;;) {
        var next = items.find(function (i) { return i.status === "queued"; });
        if (!next) break;
        await send(next);
      }
    } finally {
      running = false;
    }
  }

  async function send(item) {
    for (var tries = 0; ; tries++) {
      setState(item, "analysing", M.analysing);
      var body = new FormData();
      body.append("file", item.file, item.file.name);
      body.append("channels", item.channels);
      body.append("scenario", item.scenario);
      var r, answer = null;
      try {
        r = await fetch(form.action, {method: "POST", body: body, credentials: "same-origin",
          headers: {"X-CSRFToken": form.elements.csrf_token.value, "Accept": "application/json"}});
      } catch (e) {
        fail(item, M.network);
        return;
      }
      try { answer = await r.json(); } catch (e) { answer = null; }
      if (r.ok && answer) {
        done(item, answer);
        return;
      }
      var message = (answer && answer.error) || ("HTTP " + r.status);
      if ((r.status !== 429 && r.status !== 503) || tries >= MAX_TRIES) {
        fail(item, message);
        return;
      }
      var wait = parseInt(r.headers.get("Retry-After") || "5", 10);
      wait = Math.min(Math.max(isNaN(wait) ? 5 : wait, 1), 300);
      for (var left = wait; left > 0; left--) {
        item.status = "waiting";
        item.state.className = "upload-state state-waiting";
        item.state.textContent = fmt(M.waiting, {s: left});
        if (left === wait) {
          announce.textContent = fmt(M.status_of, {name: item.file.name, status: item.state.textContent});
          item.body.textContent = "";
          item.body.appendChild(el("p", "upload-note", message));
        }
        await sleep(1000);
      }
    }
  }

  function done(item, a) {
    item.result = a;
    setState(item, "done", M.done);
    var b = item.body;
    b.textContent = "";
    var verdict = el("p", "upload-verdict");
    verdict.appendChild(document.createTextNode(M.verdict + ": "));
    verdict.appendChild(el("b", null, named(setup.emotions, a.emotion)));
    verdict.appendChild(document.createTextNode(" (" + num(a.confidence, 2) + ") · " + M.duration + " " +
      num(a.duration, 1) + " s"));
    b.appendChild(verdict);
    var notes = [];
    if (a.model && a.model.trial) notes.push([M.trial, "error"]);
    if (a.audio && a.audio.narrowband) notes.push([M.narrowband, "warning"]);
    if (a.audio && a.audio.partial) notes.push([M.partial, "warning"]);
    if (a.layout_note) notes.push([a.layout_note, "warning"]);
    if (a.transcript_note) notes.push([a.transcript_note, "warning"]);
    notes.forEach(function (n) { b.appendChild(el("p", n[1], n[0])); });
    b.appendChild(scenario(a.scenario));
    if (a.timeline) b.appendChild(timeline(a.timeline));
    b.appendChild(segments(a.segments || []));
    csvButton.disabled = false;
  }

  function scenario(s) {
    var box = el("div", "upload-scenario");
    if (!s) {
      box.appendChild(el("p", null, M.scenario + ": " + M.no_scenario));
      return box;
    }
    var p = el("p", null, M.scenario + " " + s.name + ": " + (s.alerts.length ? "" : M.no_alert));
    box.appendChild(p);
    if (s.alerts.length) {
      var ul = el("ul", "upload-alerts");
      s.alerts.forEach(function (alert) {
        var li = el("li");
        li.appendChild(el("b", alert.severity, named(setup.severities, alert.severity)));
        li.appendChild(document.createTextNode(" · " + alert.rule + " — " + alert.summary));
        ul.appendChild(li);
      });
      box.appendChild(ul);
    }
    return box;
  }

  // The call page's timeline (plugin/web/timeline.py computed the boxes), drawn here: one
  // lane per speaker, each window coloured by its emotion, as strong as the model was sure.
  function timeline(t) {
    var box = el("div", "timeline");
    box.appendChild(el("p", "upload-subhead", M.timeline));
    t.lanes.forEach(function (lane) {
      var row = el("div", "lane");
      var roleName = lane.name || named(setup.roles, lane.role);
      row.appendChild(el("span", "lane-role", roleName));
      var svg = svgEl("svg", {viewBox: "0 0 " + t.width + " 24", preserveAspectRatio: "none", role: "img",
        "aria-label": M.timeline + ": " + roleName + ", " + Math.round(t.duration) + " s"});
      lane.boxes.forEach(function (bx) {
        var attrs = {x: bx.x, y: 2, width: bx.w, height: 20, fill: bx.color, "fill-opacity": bx.opacity};
        if (bx.used) { attrs["class"] = "used"; attrs.stroke = "#000"; attrs["stroke-width"] = 3; }
        var rect = svgEl("rect", attrs);
        var title = svgEl("title", {});
        title.textContent = clock(bx.start) + "–" + clock(bx.end) + " " + roleName + ": " +
          (bx.name || named(setup.emotions, bx.label)) + " " + num(bx.confidence, 2) +
          (bx.used ? " · " + M.used : "") + (bx.scores ? " (" + bx.scores + ")" : "");
        rect.appendChild(title);
        svg.appendChild(rect);
      });
      row.appendChild(svg);
      box.appendChild(row);
    });
    return box;
  }

  // What was said, when a speech recognizer ran (text not null): a column of the words,
  // set as text, with SenseVoice's own emotion tag and audio events in small type.
  function words(s) {
    var td = el("td", "upload-words");
    if (s.text) td.appendChild(document.createTextNode(s.text));
    else td.appendChild(el("span", "quiet", M.no_words));
    var heard = [];
    if (s.tag_emotion) heard.push(named(setup.emotions, s.tag_emotion));
    (Array.isArray(s.events) ? s.events : []).forEach(function (e) { heard.push(named(setup.events || {}, e)); });
    if (heard.length) {
      td.appendChild(el("br"));
      td.appendChild(el("small", "asr", "SenseVoice: " + heard.join(" · ")));
    }
    return td;
  }

  function segments(rows) {
    var details = el("details", "upload-segments");
    details.open = true;
    details.appendChild(el("summary", null, M.segments + " (" + rows.length + ")"));
    var table = el("table");
    var head = el("tr");
    var said = rows.some(function (s) { return s.text !== null && s.text !== undefined; });
    [M.start, M.end, M.role, M.emotion, M.confidence].concat(said ? [M.words] : []).forEach(function (h) {
      head.appendChild(el("th", null, h));
    });
    table.appendChild(head);
    rows.forEach(function (s) {
      var tr = el("tr");
      [num(s.start, 1), num(s.end, 1), named(setup.roles, s.role), named(setup.emotions, s.emotion),
       num(s.confidence, 2)].forEach(function (v) { tr.appendChild(el("td", null, v)); });
      if (said) tr.appendChild(s.text === null || s.text === undefined ? el("td") : words(s));
      table.appendChild(tr);
    });
    details.appendChild(table);
    return details;
  }

  // The CSV the server wrote for each file (formula-like cells already quoted), in the
  // page's order, after one BOM and header: UTF-8 that Excel opens with its Chinese intact.
  csvButton.addEventListener("click", function () {
    var rows = items.filter(function (i) { return i.result; }).map(function (i) { return i.result.csv; });
    var blob = new Blob(["\ufeff" + setup.csv_header + rows.join("")], {type: "text/csv;charset=utf-8"});
    var url = URL.createObjectURL(blob);
    var link = document.createElement("a");
    var now = new Date();
    link.href = url;
    link.download = "callmood-upload-" + now.getFullYear() + pad(now.getMonth() + 1) + pad(now.getDate()) +
      "-" + pad(now.getHours()) + pad(now.getMinutes()) + pad(now.getSeconds()) + ".csv";
    document.body.appendChild(link);
    link.click();
    link.remove();
    setTimeout(function () { URL.revokeObjectURL(url); }, 60000);
  });

  input.addEventListener("change", function () {
    if (input.files && input.files.length) add(input.files);
    input.value = ""; // the same file can be chosen again
  });
  ["dragenter", "dragover"].forEach(function (type) {
    zone.addEventListener(type, function (e) {
      e.preventDefault();
      e.dataTransfer.dropEffect = "copy";
      zone.classList.add("over");
    });
  });
  zone.addEventListener("dragleave", function (e) {
    if (!zone.contains(e.relatedTarget)) zone.classList.remove("over");
  });
  zone.addEventListener("drop", function (e) {
    e.preventDefault();
    zone.classList.remove("over");
    if (e.dataTransfer && e.dataTransfer.files.length) add(e.dataTransfer.files);
  });
  // A file dropped beside the box must not make the browser leave the page to open it.
  ["dragover", "drop"].forEach(function (type) {
    window.addEventListener(type, function (e) { if (!zone.contains(e.target)) e.preventDefault(); });
  });
});
