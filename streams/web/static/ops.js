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

  function every(ms, load) {
    let timer = null;
    async function run() {
      clearTimeout(timer);
      try {
        await load();
        problem("");
        text("refreshed", new Date().toLocaleTimeString());
      } catch (error) {
        if (error.status !== 401) problem("Could not refresh: " + error.message);
      }
      timer = setTimeout(run, ms);
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
    every(5000, async function () {
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

  pages.deadletters = function () {
    const results = {};
    every(5000, async function () {
      const data = await api("/ops/api/deadletters?limit=100");
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
  };

  pages.flows = function () {
    const by = document.getElementById("ack-by");
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
