// Admin pages: the dashboard's charts and the logs page's live tail.
(() => {
  "use strict";

  const csrfToken = document.querySelector('meta[name="csrf-token"]').content;

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    if (seconds < 90) return `${Math.round(seconds)}s`;
    if (seconds < 5400) return `${Math.round(seconds / 60)}m`;
    if (seconds < 172800) return `${(seconds / 3600).toFixed(1)}h`;
    return `${(seconds / 86400).toFixed(1)}d`;
  }

  function bytes(count) {
    return `${(count / 1048576).toFixed(0)} MB`;
  }

  function setFigure(name, value) {
    const element = document.querySelector(`[data-figure="${name}"]`);
    if (element) element.textContent = value;
  }

  // The dashboard.
  const volumeChart = document.getElementById("volume-chart");
  if (volumeChart) {
    const days = document.getElementById("days");
    const charts = {};

    const draw = (key, element, series, data) => {
      const width = element.clientWidth || 800;
      if (charts[key]) {
        charts[key].setData(data);
        return;
      }
      charts[key] = new uPlot(
        {
          width,
          height: 240,
          scales: { x: { time: true } },
          axes: [{}, { label: "tickets" }],
          series: [{}, ...series],
        },
        data,
        element,
      );
    };

    const render = ({ support, system }) => {
      const times = support.days.map((day) => Date.parse(`${day}T00:00:00Z`) / 1000);
      const sum = (values) => values.reduce((total, value) => total + value, 0);

      setFigure("opened", sum(support.opened));
      setFigure("closed", sum(support.closed));
      setFigure("backlog", support.backlog.at(-1));
      setFigure(
        "first_response",
        `${duration(support.first_response.median)} · ${duration(support.first_response.p90)}`,
      );
      setFigure(
        "resolution",
        `${duration(support.resolution.median)} · ${duration(support.resolution.p90)}`,
      );
      setFigure(
        "rating",
        support.ratings.average === null ? "–" : `${support.ratings.average.toFixed(2)} ★`,
      );
      setFigure(
        "rating_counts",
        support.ratings.counts.map((count, index) => `${index + 1}★ ${count}`).join(" · "),
      );

      draw("volume", volumeChart, [
        { label: "Opened", stroke: "#2a6fdb", width: 2 },
        { label: "Closed", stroke: "#2e7d32", width: 2 },
      ], [times, support.opened, support.closed]);
      draw("backlog", document.getElementById("backlog-chart"), [
        { label: "Backlog", stroke: "#b26a00", width: 2, fill: "rgba(178,106,0,.1)" },
      ], [times, support.backlog]);

      const agents = document.querySelector("#agents tbody");
      agents.replaceChildren(
        ...support.agents.map((agent) => {
          const row = document.createElement("tr");
          for (const value of [
            agent.name,
            agent.replies,
            agent.closed,
            agent.first_response.count,
            duration(agent.first_response.median),
          ]) {
            const cell = document.createElement("td");
            cell.textContent = value;
            row.append(cell);
          }
          return row;
        }),
      );

      const facts = [
        ["CPU", `${system.cpu_percent.toFixed(1)} %`],
        ["Memory", `${bytes(system.memory_rss_bytes)} (machine ${system.system_memory_percent} % used)`],
        ["Up for", duration(system.uptime_seconds)],
        ["Database", system.database.ok
          ? `${system.database.latency_ms} ms · pool ${system.database.pool_checked_out ?? "–"} of ${system.database.pool_size ?? "–"} in use`
          : `unreachable (${system.database.error})`],
        ["Outbox", `${system.outbox.waiting} waiting, oldest ${duration(system.outbox.oldest_age_seconds)} · ${system.outbox.failed} failed`],
        ["Log records dropped", system.log_records_dropped],
      ];
      document.getElementById("system").replaceChildren(
        ...facts.flatMap(([name, value]) => {
          const term = document.createElement("dt");
          const detail = document.createElement("dd");
          term.textContent = name;
          detail.textContent = value;
          return [term, detail];
        }),
      );
      document.getElementById("updated").textContent =
        `updated ${new Date().toLocaleTimeString()}`;
      document.body.dataset.dashboard = "drawn";
    };

    const refresh = async () => {
      const response = await fetch(`/admin/dashboard/data?days=${days.value}`, {
        headers: { Accept: "application/json" },
      });
      if (response.ok) render(await response.json());
    };

    days.addEventListener("change", refresh);
    refresh();
    setInterval(refresh, 15000);
  }

  // The logs page: new records appear at the top while "Live tail" is on.
  const logTable = document.getElementById("log-table");
  if (logTable) {
    const toggle = document.getElementById("live-tail");
    const levels = { DEBUG: 10, INFO: 20, WARNING: 30, ERROR: 40, CRITICAL: 50 };
    const lowest = levels[logTable.dataset.level] || 20;
    let socket = null;

    const addRow = (record) => {
      if (record.level < lowest) return;
      const row = document.createElement("tr");
      row.className = `level-${record.level}`;
      const link = document.createElement("a");
      link.href = `/admin/logs/${record.id}`;
      link.textContent = record.created_at.replace("T", " ").slice(0, 19);
      const cells = [link, record.level_name, record.logger, record.message, ""];
      for (const content of cells) {
        const cell = document.createElement("td");
        cell.append(content);
        row.append(cell);
      }
      logTable.tBodies[0].prepend(row);
    };

    toggle.addEventListener("change", () => {
      if (toggle.checked && !socket) {
        socket = io("/staff", { auth: { csrf_token: csrfToken } });
        socket.on("connect", () => socket.emit("follow_logs"));
        socket.on("log_records", (records) => records.forEach(addRow));
      } else if (!toggle.checked && socket) {
        socket.disconnect();
        socket = null;
      }
    });
  }
})();
