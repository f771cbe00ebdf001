/* fleetstream operator views: fills the server-rendered pages from their JSON endpoints.
   Vanilla JS, no build step, no external files. Data goes in with textContent only. */
(function () {
  "use strict";

  const body = document.body;
  const page = body.dataset.page;

  class ApiError extends Error {
    constructor(message, status, detail) {
      super(message);
      this.status = status;
      this.detail = detail;
    }
  }

  async function api(path, options) {
    const response = await fetch(path, Object.assign({
      credentials: "same-origin",
      headers: {"Accept": "application/json"},
    }, options || {}));
    if (response.status === 401) {
      location.href = "/ops/login?next=" + encodeURIComponent(location.pathname + location.search);
      throw new ApiError("logged out", 401, {});
    }
    const data = await response.json().catch(function () { return {}; });
    if (!response.ok) {
      throw new ApiError(data.detail || data.title || data.status || response.statusText,
        response.status, data);
    }
    return data;
  }

  function post(path, data) {
    return api(path, {
      method: "POST",
      headers: {"Content-Type": "application/json", "Accept": "application/json"},
      body: JSON.stringify(data || {}),
    });
  }

  function text(id, value) {
    const element = document.getElementById(id);
    if (element) element.textContent = value == null ? "–" : String(value);
  }

  function rate(value) {
    const number = Number(value || 0);
    return number >= 100 ? number.toFixed(0) : number.toFixed(1);
  }

  function when(iso) {
    return iso ? new Date(iso).toLocaleString() : "–";
  }

  function short(value, length) {
    const shown = typeof value === "string" ? value : JSON.stringify(value);
    return shown.length > length ? shown.slice(0, length - 1) + "…" : shown;
  }

  function cell(row, value, className) {
    const td = document.createElement("td");
    td.textContent = value == null || value === "" ? "–" : String(value);
    if (className) td.className = className;
    row.appendChild(td);
    return td;
  }

  function link(row, href, label) {
    const td = document.createElement("td");
    const a = document.createElement("a");
    a.href = href;
    a.textContent = label;
    td.appendChild(a);
    row.appendChild(td);
    return td;
  }

  function fill(tableId, items, render) {
    const tbody = document.querySelector("#" + tableId + " tbody");
    const rows = items.map(function (item) {
      const row = document.createElement("tr");
      render(row, item);
      return row;
    });
    if (!rows.length) {
      const row = document.createElement("tr");
      const td = cell(row, "nothing here", "empty");
      td.colSpan = document.querySelectorAll("#" + tableId + " thead th").length;
      rows.push(row);
    }
    tbody.replaceChildren.apply(tbody, rows);
  }

  function describe(listId, pairs) {
    const list = document.getElementById(listId);
    const children = [];
    pairs.forEach(function (pair) {
      const dt = document.createElement("dt");
      dt.textContent = pair[0];
      const dd = document.createElement("dd");
      dd.textContent = pair[1] == null || pair[1] === "" ? "–" : String(pair[1]);
      if (pair[2]) dd.id = pair[2];
      children.push(dt, dd);
    });
    list.replaceChildren.apply(list, children);
  }

  function problem(message) {
    const banner = document.getElementById("problem");
    if (!banner) return;
    banner.textContent = message || "";
    banner.hidden = !message;
  }

  /* Runs load now and every ms; calling the returned function reloads at once (a new filter).
     A run started later supersedes one still in flight, whose timer it replaces, so an older
     answer never schedules a second refresh loop. */
  function every(ms, load) {
    let timer = null;
    let latest = 0;
    async function run() {
      clearTimeout(timer);
      const mine = ++latest;
      try {
        await load();
        if (mine === latest) {
          problem("");
          text("refreshed", new Date().toLocaleTimeString());
        }
      } catch (error) {
        if (error.status !== 401 && mine === latest) problem("Could not refresh: " + error.message);
      }
      if (mine === latest) timer = setTimeout(run, ms);
    }
    run();
    return run;
  }

  function values(lastValues) {
    return Object.keys(lastValues || {}).sort().map(function (key) {
      return key + "=" + JSON.stringify(lastValues[key]);
    }).join("  ");
  }

  function partitions(byTopic) {
    return Object.keys(byTopic || {}).sort().map(function (topic) {
      return topic + ": " + byTopic[topic].join(",");
    }).join("  ");
  }

  function agents(byAgent) {
    return Object.keys(byAgent || {}).map(function (agent) {
      return agent + " " + rate(byAgent[agent]);
    }).join(", ");
  }

  const pages = {};

  pages.overview = function () {
    every(3000, async function () {
      const data = await api("/ops/api/overview");
      text("readings-in", rate(data.readings.in_per_s));
      text("readings-out", rate(data.readings.out_per_s));
      text("devices-online", data.devices.online + (data.devices.complete ? "" : " (some workers not ready)"));
      text("devices-offline", data.devices.offline);
      const stages = data.dead_letters.last_hour;
      text("letters-hour", Object.values(stages).reduce(function (a, b) { return a + b; }, 0));
      text("alerts-active", data.alerts.active == null ? "? " + data.alerts.error : data.alerts.active);
      fill("throughput", data.throughput, function (row, item) {
        row.dataset.topic = item.topic;
        cell(row, item.topic);
        cell(row, rate(item.in_per_s), "num in");
        cell(row, rate(item.out_per_s), "num out");
        cell(row, agents(item.consumers));
        cell(row, agents(item.producers));
      });
      if (data.lag_error) problem("Consumer lag: " + data.lag_error);
      fill("lag", data.lag, function (row, item) {
        cell(row, item.group);
        cell(row, item.topic);
        cell(row, item.partition, "num");
        cell(row, item.committed, "num");
        cell(row, item.end, "num");
        cell(row, item.lag, "num" + (item.lag > 0 ? " warn" : ""));
        cell(row, item.worker);
      });
      fill("letter-stages", Object.keys(stages).sort().map(function (stage) {
        return [stage, stages[stage]];
      }), function (row, item) {
        row.dataset.stage = item[0];
        cell(row, item[0]);
        cell(row, item[1], "num");
      });
      fill("workers", data.workers, function (row, item) {
        cell(row, item.url);
        cell(row, item.trusted === false ? item.error + " (not called)"
          : item.error ? "error: " + item.error : (item.ready ? "running" : "recovering"));
        cell(row, partitions(item.partitions));
        cell(row, item.devices ? item.devices.online + " / " + item.devices.offline : "–");
      });
      const compat = data.compat || {seeds: []};
      const compatLine = document.getElementById("compat");
      compatLine.hidden = !compat.seeds.length;
      compatLine.textContent = compat.seeds.length
        ? "Seed profiles on: " + compat.seeds.join(", ") + (compat.trusted_networks.length
          ? "; their routes serve callers without credentials from " + compat.trusted_networks.join(", ")
          : "; no trusted networks, so no route serves callers without credentials")
        : "";
      fill("fronts", data.mqtt_fronts || [], function (row, item) {
        row.dataset.front = item.url;
        cell(row, item.url);
        cell(row, item.error ? item.status + ": " + item.error : item.status + " (pid " + item.pid + ")",
          item.status === "ok" ? "" : "warn");
        cell(row, item.connections, "num");
        const publishes = item.publishes || {};
        cell(row, item.error ? null : publishes.accepted || 0, "num");
        cell(row, counts(publishes, "accepted"));
        cell(row, counts(item.refusals || {}));
        cell(row, item.puback ? seconds(item.puback.p50_s) + " / " + seconds(item.puback.p99_s) : "–");
      });
    });
  };

  function counts(byName, skip) {
    return Object.keys(byName).filter(function (name) { return name !== skip; }).sort()
      .map(function (name) { return name + " " + byName[name]; }).join(", ");
  }

  function seconds(value) {
    if (value == null) return "–";
    return value === "+Inf" ? "> 10 s" : "≤ " + (value * 1000).toFixed(0) + " ms";
  }

  pages.devices = function () {
    const fields = ["q", "status", "tag", "profile"].map(function (id) {
      return document.getElementById(id);
    });
    const params = new URLSearchParams(location.search);
    fields.forEach(function (field) { field.value = params.get(field.id) || field.value; });
    let after = params.get("after") || "";
    let next = null;
    function query() {
      const wanted = new URLSearchParams();
      fields.forEach(function (field) { if (field.value) wanted.set(field.id, field.value); });
      if (after) wanted.set("after", after);
      return wanted.toString();
    }
    const reload = every(5000, async function () {
      const data = await api("/ops/api/devices?" + query());
      next = data.next;
      document.getElementById("next-page").disabled = !next;
      document.getElementById("first-page").disabled = !after;
      text("devices-note", data.items.length + " devices" + (after ? " after " + after : "")
        + (next ? ", more on the next page" : "")
        + (data.complete ? "" : ", some workers are not ready"));
      fill("devices", data.items, function (row, item) {
        row.dataset.deviceId = item.device_id;
        link(row, "/ops/devices/" + encodeURIComponent(item.device_id), item.device_id);
        cell(row, item.name);
        cell(row, item.status, "status " + item.status.replace(" ", "-"));
        cell(row, when(item.last_seen));
        cell(row, item.count, "num");
        cell(row, values(item.last_values), "values");
      });
    });
    function go(cursor) {
      after = cursor;
      history.replaceState(null, "", "?" + query());
      reload();
    }
    document.getElementById("search").addEventListener("submit", function (event) {
      event.preventDefault();
      go("");
    });
    document.getElementById("next-page").addEventListener("click", function () { go(next || ""); });
    document.getElementById("first-page").addEventListener("click", function () { go(""); });
  };

  pages.device = function () {
    const deviceId = body.dataset.deviceId;
    const path = "/ops/api/devices/" + encodeURIComponent(deviceId);
    const toggle = document.getElementById("toggle-enabled");
    const actions = {enabled: null};
    toggle.addEventListener("click", async function () {
      toggle.disabled = true;
      try {
        const answer = await post(path + "/enabled", {enabled: !actions.enabled});
        text("action-result", answer.is_enabled ? "enabled" : "disabled");
        await reload();
      } catch (error) {
        text("action-result", "not changed: " + error.message);
        toggle.disabled = false;
      }
    });
    document.getElementById("rotate-token").addEventListener("click", async function () {
      if (!window.confirm("Give " + deviceId + " a new token? The old one stops working within seconds.")) return;
      try {
        const answer = await post(path + "/rotate-token", {});
        text("new-token-value", answer.token);
        document.getElementById("new-token").hidden = false;
        text("action-result", "token rotated");
      } catch (error) {
        text("action-result", "not rotated: " + error.message);
      }
    });
    const reload = every(5000, async function () {
      const data = await api("/ops/api/devices/" + encodeURIComponent(deviceId));
      const state = data.state || {};
      if (data.state_status === 200) {
        text("state-note", "");
        describe("state", [
          ["status", state.online ? "online" : "offline", "device-status"],
          ["last seen", when(state.last_seen)],
          ["first seen", when(state.first_seen)],
          ["readings", state.count],
          ["last event", state.last_event_id],
          ["last values", values(state.last_values)],
          ["worker", state.worker],
        ]);
      } else {
        text("state-note", state.status === "not trusted"
          ? "The worker that owns this device advertises " + state.worker + ", which FLEET_WORKER__TRUSTED_URLS does not list: it was not asked."
          : data.state_status === 503
          ? "The status table is recovering on the owning worker; try again in a moment."
          : "The status table has no entry for this device (" + (state.status || data.state_status) + ").");
        describe("state", [["status", state.status || "unknown", "device-status"]]);
      }
      const registry = data.registry;
      actions.enabled = registry ? registry.enabled : null;
      toggle.disabled = !registry;
      toggle.textContent = registry && !registry.enabled ? "enable" : "disable";
      describe("registry", registry ? [
        ["name", registry.name], ["profile", registry.profile], ["tags", registry.tags.join(", ")],
        ["enabled", registry.enabled ? "yes" : "no"], ["registered", when(registry.created_at)],
      ] : [["registered", "no"]]);
      fill("readings", data.readings, function (row, item) {
        row.dataset.eventId = item.event_id;
        cell(row, when(item.ts));
        cell(row, when(item.received_at));
        cell(row, item.event_id, "mono");
        cell(row, short(item.sensors, 200), "values");
      });
      fill("history", data.history, function (row, item) {
        cell(row, item.seq, "num");
        cell(row, item.online ? "online" : "offline");
        cell(row, item.reason);
        cell(row, when(item.changed_at));
      });
      fill("device-alerts", data.alerts, function (row, item) {
        cell(row, when(item.fired_at));
        cell(row, item.rule_id);
        cell(row, item.severity);
        cell(row, item.state);
        cell(row, item.message);
      });
      fill("device-letters", data.letters, function (row, item) {
        cell(row, when(item.failed_at));
        cell(row, item.stage);
        cell(row, item.reason);
      });
      const problems = Object.keys(data.problems || {}).map(function (k) { return k + ": " + data.problems[k]; });
      if (problems.length) problem(problems.join("; "));
    });
  };

  const SVG = "http://www.w3.org/2000/svg";
  const COLORS = ["#1f6feb", "#b42318", "#1a7f37", "#9a6700"];

  function svgElement(name, attributes) {
    const element = document.createElementNS(SVG, name);
    Object.keys(attributes).forEach(function (key) { element.setAttribute(key, attributes[key]); });
    return element;
  }

  function axisNumber(value) {
    if (value >= 1e6) return (value / 1e6).toFixed(1) + "M";
    if (value >= 1e3) return (value / 1e3).toFixed(1) + "k";
    return value >= 10 ? value.toFixed(0) : value.toFixed(2);
  }

  /* One chart: the last hour of points, one line per series, drawn as SVG in the page. */
  function chart(figure, points, series, newest) {
    const width = 600, height = 180, left = 44, bottom = 18, top = 8;
    const start = newest - 3600;
    let top_value = 0;
    series.forEach(function (one) {
      points.forEach(function (p) { if (p[one.key] != null) top_value = Math.max(top_value, p[one.key]); });
    });
    top_value = top_value > 0 ? top_value * 1.1 : 1;
    const x = function (at) { return left + (width - left - 4) * (at - start) / 3600; };
    const y = function (value) { return top + (height - top - bottom) * (1 - value / top_value); };
    const svg = svgElement("svg", {viewBox: "0 0 " + width + " " + height, role: "img"});
    svg.appendChild(svgElement("line", {x1: left, y1: y(0), x2: width - 4, y2: y(0), stroke: "#d9dee5"}));
    svg.appendChild(svgElement("line", {x1: left, y1: top, x2: left, y2: y(0), stroke: "#d9dee5"}));
    [[top_value / 1.1, y(top_value / 1.1)], [0, y(0)]].forEach(function (tick) {
      const label = svgElement("text", {x: left - 4, y: tick[1] + 4, "text-anchor": "end", "font-size": 10, fill: "#5f6b7a"});
      label.textContent = axisNumber(tick[0]);
      svg.appendChild(label);
    });
    [["−60 min", left, "start"], ["−30 min", x(start + 1800), "middle"], ["now", width - 4, "end"]].forEach(function (tick) {
      const label = svgElement("text", {x: tick[1], y: height - 4, "text-anchor": tick[2], "font-size": 10, fill: "#5f6b7a"});
      label.textContent = tick[0];
      svg.appendChild(label);
    });
    const legend = document.createElement("div");
    legend.className = "legend";
    series.forEach(function (one, index) {
      let run = [];
      const runs = [run];
      points.forEach(function (p) {
        if (p[one.key] == null || p.at < start) {
          if (run.length) { run = []; runs.push(run); }
          return;
        }
        run.push(x(p.at).toFixed(1) + "," + y(p[one.key]).toFixed(1));
      });
      runs.filter(function (r) { return r.length; }).forEach(function (r) {
        if (r.length === 1) {  /* a lone sample: a dot, which a one-point line would not show */
          const xy = r[0].split(",");
          svg.appendChild(svgElement("circle", {cx: xy[0], cy: xy[1], r: 2.5, fill: COLORS[index]}));
        }
        svg.appendChild(svgElement("polyline", {
          points: r.join(" "), fill: "none", stroke: COLORS[index], "stroke-width": 1.6,
          "data-series": one.key,
        }));
      });
      const last = points.length ? points[points.length - 1][one.key] : null;
      const item = document.createElement("span");
      item.textContent = "■ " + one.label + " " + (last == null ? "–" : axisNumber(last)) + "  ";
      item.style.color = COLORS[index];  /* CSSOM, which the page's CSP allows */
      legend.appendChild(item);
    });
    const caption = document.createElement("figcaption");
    caption.textContent = figure.dataset.title;
    figure.replaceChildren(caption, svg, legend);
  }

  pages.trends = function () {
    every(10000, async function () {
      const data = await api("/ops/api/trends");
      const points = data.points;
      const newest = points.length ? points[points.length - 1].at : Date.now() / 1000;
      chart(document.getElementById("chart-readings"), points, [
        {key: "readings_in_per_s", label: "in /s"}, {key: "readings_out_per_s", label: "out /s"}], newest);
      chart(document.getElementById("chart-lag"), points, [{key: "lag", label: "records"}], newest);
      chart(document.getElementById("chart-letters"), points, [{key: "dead_letters_per_s", label: "letters /s"}], newest);
      chart(document.getElementById("chart-latency"), points, [
        {key: "latency_p50_s", label: "p50 s"}, {key: "latency_p99_s", label: "p99 s"}], newest);
      chart(document.getElementById("chart-devices"), points, [
        {key: "devices_online", label: "online"}, {key: "devices_offline", label: "offline"}], newest);
      const errors = Object.keys(data.errors || {});
      text("trends-workers", points.length + " samples; this worker's history since " + when(data.started_at)
        + (errors.length ? "; no answer from " + errors.join(", ") : ""));
    });
  };

  function isoOf(localValue) {
    return localValue ? new Date(localValue).toISOString() : "";
  }

  function filterOf(ids) {
    const wanted = {};
    ids.forEach(function (id) {
      const field = document.getElementById(id);
      const value = field.type === "datetime-local" ? isoOf(field.value) : field.value.trim();
      if (value) wanted[id] = value;
    });
    return wanted;
  }

  const LETTER_FILTER = ["stage", "device_id", "reason", "since", "until"];

  pages.deadletters = function () {
    const results = {};
    let preview = null;
    const params = new URLSearchParams(location.search);
    LETTER_FILTER.forEach(function (id) {
      const field = document.getElementById(id);
      if (params.get(id) && field.type !== "datetime-local") field.value = params.get(id);
    });
    const reload = every(5000, async function () {
      const wanted = new URLSearchParams(filterOf(LETTER_FILTER));
      wanted.set("limit", "100");
      const data = await api("/ops/api/deadletters?" + wanted.toString());
      text("letters-note", data.matching + " letters match" + (data.caught_up ? "" : " (still reading the topic)"));
      const stages = data.last_hour;
      fill("letter-stages", Object.keys(stages).sort().map(function (s) { return [s, stages[s]]; }),
        function (row, item) {
          row.dataset.stage = item[0];
          cell(row, item[0]);
          cell(row, item[1], "num");
        });
      fill("letters", data.items, function (row, item) {
        const position = item.partition + "/" + item.offset;
        row.dataset.position = position;
        row.dataset.eventId = item.event_id || "";
        row.dataset.deviceId = item.device_id || "";
        cell(row, when(item.failed_at));
        cell(row, item.stage);
        cell(row, item.device_id);
        cell(row, item.reason, "reason");
        cell(row, item.preview, "mono preview");
        const td = document.createElement("td");
        const button = document.createElement("button");
        button.type = "button";
        button.className = "replay";
        button.textContent = item.replayed ? "replay again" : "replay";
        const result = document.createElement("span");
        result.className = "result";
        result.textContent = results[position] || "";
        button.addEventListener("click", async function () {
          button.disabled = true;
          try {
            const answer = await post("/ops/api/deadletters/replay", {partition: item.partition, offset: item.offset});
            results[position] = "replayed " + answer.readings + " reading(s)";
          } catch (error) {
            results[position] = "not replayed: " + error.message;
          }
          result.textContent = results[position];
          button.disabled = false;
        });
        td.append(button, result);
        row.appendChild(td);
      });
    });
    const bulk = document.getElementById("bulk");
    document.getElementById("letter-filter").addEventListener("submit", function (event) {
      event.preventDefault();
      bulk.hidden = true;
      reload();
    });
    document.getElementById("bulk-preview").addEventListener("click", async function () {
      text("bulk-result", "");
      try {
        const wanted = filterOf(LETTER_FILTER);
        const answer = await post("/ops/api/deadletters/replay/preview", wanted);
        preview = {wanted: wanted, count: answer.count};
        text("bulk-summary", answer.count + " letters match (" + answer.scope + "); the first of them:");
        fill("bulk-sample", answer.sample, function (row, item) {
          cell(row, when(item.failed_at));
          cell(row, item.stage);
          cell(row, item.device_id);
          cell(row, item.reason);
        });
        document.getElementById("bulk-confirm").disabled = answer.count === 0;
        bulk.hidden = false;
      } catch (error) {
        problem("No preview: " + error.message);
      }
    });
    document.getElementById("bulk-cancel").addEventListener("click", function () {
      bulk.hidden = true;
      preview = null;
    });
    document.getElementById("bulk-confirm").addEventListener("click", async function () {
      if (!preview) return;
      const button = document.getElementById("bulk-confirm");
      button.disabled = true;
      text("bulk-result", "replaying " + preview.count + " letters…");
      try {
        const answer = await post("/ops/api/deadletters/replay/bulk",
          Object.assign({expected: preview.count}, preview.wanted));
        text("bulk-result", "replayed " + answer.letters + " letters (" + answer.readings + " readings)"
          + (answer.skipped.length ? ", " + answer.skipped.length + " skipped: " + answer.skipped.map(function (s) { return s.position + " " + s.why; }).join("; ") : ""));
        preview = null;
      } catch (error) {
        text("bulk-result", "not replayed: " + error.message);
        button.disabled = false;
      }
    });
  };

  pages.flows = function () {
    const by = document.getElementById("ack-by");
    const choice = document.getElementById("dry-run-flow");
    async function loadRegistry() {
      const registry = await api("/ops/api/flows/registry");
      fill("flow-registry", registry.items, function (row, item) {
        row.dataset.flowId = item.flow_id;
        cell(row, item.flow_id);
        cell(row, item.version, "num");
        cell(row, item.definition && item.definition.name);
        cell(row, item.enabled ? "yes" : "no", "enabled");
        const td = document.createElement("td");
        const button = document.createElement("button");
        button.type = "button";
        button.className = "toggle";
        button.textContent = item.enabled ? "disable" : "enable";
        button.addEventListener("click", async function () {
          button.disabled = true;
          try {
            await post("/ops/api/flows/" + encodeURIComponent(item.flow_id) + "/enabled", {enabled: !item.enabled});
            await loadRegistry();
          } catch (error) {
            problem("Not changed: " + error.message);
            button.disabled = false;
          }
        });
        td.appendChild(button);
        row.appendChild(td);
      });
      const chosen = choice.value;
      choice.replaceChildren.apply(choice, registry.items.map(function (item) {
        const option = document.createElement("option");
        option.value = item.flow_id;
        option.textContent = item.flow_id;
        return option;
      }));
      if (chosen) choice.value = chosen;
    }
    document.getElementById("dry-run").addEventListener("submit", async function (event) {
      event.preventDefault();
      const out = document.getElementById("dry-run-result");
      let reading;
      try {
        reading = JSON.parse(document.getElementById("dry-run-reading").value);
      } catch (error) {
        out.textContent = "The reading is not JSON: " + error.message;
        return;
      }
      out.textContent = "running…";
      try {
        const answer = await post("/ops/api/flows/" + encodeURIComponent(choice.value) + "/dry-run", {reading: reading});
        out.textContent = JSON.stringify(answer, null, 2);
      } catch (error) {
        out.textContent = "Dry run refused: " + error.message
          + (error.detail && error.detail.errors ? "\n" + JSON.stringify(error.detail.errors, null, 2) : "");
      }
    });
    const reload = every(5000, async function () {
      const flows = await api("/ops/api/flows");
      fill("flows", flows.items, function (row, item) {
        row.dataset.flowId = item.flow_id;
        cell(row, item.flow_id);
        cell(row, item.version, "num");
        cell(row, item.name);
        cell(row, item.alert_rule ? "alert rule" : "flow");
        cell(row, item.runs, "num runs");
        cell(row, item.errors, "num");
        cell(row, item.failed_calls, "num");
      });
      const errors = Object.keys(flows.errors || {});
      if (errors.length) problem("No flows from " + errors.join(", "));
      const alerts = await api("/ops/api/alerts");
      fill("alerts", alerts.items, function (row, item) {
        row.dataset.alertId = item.alert_id;
        cell(row, when(item.fired_at));
        cell(row, item.device_id);
        cell(row, item.rule_id);
        cell(row, item.severity, "severity " + item.severity);
        cell(row, item.value, "num");
        cell(row, item.message);
        cell(row, item.acknowledged_by ? item.acknowledged_by + ", " + when(item.acknowledged_at) : "no", "acknowledged");
        const td = document.createElement("td");
        if (!item.acknowledged_at) {
          const button = document.createElement("button");
          button.type = "button";
          button.className = "ack";
          button.textContent = "acknowledge";
          button.addEventListener("click", async function () {
            button.disabled = true;
            try {
              await post("/ops/api/alerts/" + encodeURIComponent(item.alert_id) + "/ack", {by: by.value});
              await reload();
            } catch (error) {
              problem("Not acknowledged: " + error.message);
              button.disabled = false;
            }
          });
          td.appendChild(button);
        }
        row.appendChild(td);
      });
      try {
        await loadRegistry();
        text("registry-note", "");
      } catch (error) {
        if (error.status === 401) throw error;
        text("registry-note", "No flow registry from the admin API: " + error.message);
      }
    });
  };

  const ALERT_FILTER = ["state", "device_id", "rule_id", "severity", "acknowledged", "since", "until"];
  const ALERT_PAGE = 50;

  pages.alerts = function () {
    let offset = 0;
    let total = 0;
    const reload = every(10000, async function () {
      const wanted = new URLSearchParams(filterOf(ALERT_FILTER));
      wanted.set("limit", String(ALERT_PAGE));
      wanted.set("offset", String(offset));
      const data = await api("/ops/api/alerts/history?" + wanted.toString());
      total = data.total;
      text("alerts-note", total + " alerts match" + (total ? "; " + (offset + 1) + "–" + (offset + data.items.length) + " shown" : ""));
      document.getElementById("newer").disabled = offset === 0;
      document.getElementById("older").disabled = offset + ALERT_PAGE >= total;
      fill("alert-history", data.items, function (row, item) {
        row.dataset.alertId = item.alert_id;
        cell(row, when(item.fired_at));
        cell(row, item.device_id);
        cell(row, item.rule_id);
        cell(row, item.severity, "severity " + item.severity);
        cell(row, item.state, "state");
        cell(row, when(item.cleared_at));
        cell(row, item.value, "num");
        cell(row, item.message);
        cell(row, item.acknowledged_by ? item.acknowledged_by + ", " + when(item.acknowledged_at) : "no", "acknowledged");
      });
    });
    document.getElementById("alert-filter").addEventListener("submit", function (event) {
      event.preventDefault();
      offset = 0;
      reload();
    });
    document.getElementById("newer").addEventListener("click", function () {
      offset = Math.max(0, offset - ALERT_PAGE);
      reload();
    });
    document.getElementById("older").addEventListener("click", function () {
      offset += ALERT_PAGE;
      reload();
    });
  };

  const logout = document.getElementById("logout");
  if (logout) {
    logout.addEventListener("click", async function () {
      await post("/ops/logout").catch(function () { return null; });
      location.href = "/ops/login";
    });
  }
  document.querySelectorAll("nav a").forEach(function (a) {
    if (a.dataset.nav === page || (page === "device" && a.dataset.nav === "devices")) a.className = "here";
  });
  if (pages[page]) pages[page]();
})();
