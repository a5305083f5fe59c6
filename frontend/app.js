// The dashboard: live alerts over SSE, model metrics as charts, jobs, schedules and a
// try-it form. Everything goes through /api/ on this origin (nginx proxies it).
"use strict";

const API = "/api";
const ALERTS_SHOWN = 100;

// --- API token ------------------------------------------------------------------
// Writes need MLOPS_API_TOKEN. `make up` prints a link ending in #token=…: the page keeps
// the token in this browser's storage and drops it from the address bar. It can also
// be pasted into the header's field.
const TOKEN_KEY = "mlops.apiToken";
const tokenForm = document.getElementById("token-form");
const tokenInput = document.getElementById("api-token");
const tokenState = document.getElementById("token-state");

function adoptTokenFromAddress() {
  const match = location.hash.match(/(?:^#|&)token=([^&]+)/);
  if (!match) return;
  localStorage.setItem(TOKEN_KEY, decodeURIComponent(match[1]));
  history.replaceState(null, "", location.href.split("#")[0]);
}

function showTokenState() {
  const saved = Boolean(localStorage.getItem(TOKEN_KEY));
  tokenState.textContent = saved ? "API token saved" : "No API token: training and schedules need it";
  tokenState.dataset.state = saved ? "saved" : "missing";
}

tokenForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const value = tokenInput.value.trim();
  if (value) localStorage.setItem(TOKEN_KEY, value);
  else localStorage.removeItem(TOKEN_KEY);
  tokenInput.value = "";
  showTokenState();
});

async function api(path, options = {}) {
  const headers = { "Content-Type": "application/json" };
  const token = localStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = `Bearer ${token}`;
  const response = await fetch(`${API}${path}`, { ...options, headers });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    if (response.status === 401) {
      tokenInput.focus();
      throw new Error(`${describeError(body)}. Paste the API token in the field at the top.`);
    }
    throw new Error(describeError(body) || `${response.status} ${response.statusText}`);
  }
  return body;
}

adoptTokenFromAddress();
showTokenState();

function describeError(body) {
  const detail = body && body.detail;
  if (!detail) return "";
  if (typeof detail === "string") return detail;
  return detail.map((d) => `${d.loc.slice(1).join(".")}: ${d.msg}`).join("; ");
}

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  node.append(...children);
  return node;
}

const when = (iso) => (iso ? new Date(iso).toLocaleString() : "–");
const percent = (value) => (value == null ? "–" : `${(value * 100).toFixed(1)}%`);

// --- Alerts -------------------------------------------------------------------------
const alertList = document.getElementById("alerts");
const connection = document.getElementById("connection");
const seenAlerts = new Set();

function showAlert(alert, { live }) {
  if (seenAlerts.has(alert.id)) return;
  seenAlerts.add(alert.id);
  const item = el(
    "li",
    { class: `alert level-${alert.level}`, "data-id": alert.id },
    el("time", { datetime: alert.created_at }, when(alert.created_at)),
    el("span", { class: "level" }, alert.level),
    el("span", { class: "text" }, alert.text),
  );
  if (live) alertList.prepend(item);
  else alertList.append(item);
  while (alertList.children.length > ALERTS_SHOWN) alertList.lastElementChild.remove();
}

function setConnection(state, text) {
  connection.dataset.state = state;
  connection.textContent = text;
}

async function followAlerts() {
  let since = "";
  try {
    const { alerts } = await api("/alerts?limit=50");
    alerts.forEach((alert) => showAlert(alert, { live: false }));
    if (alerts.length) since = `?since=${encodeURIComponent(alerts[0].id)}`;
  } catch (error) {
    setConnection("down", `Alerts unavailable: ${error.message}`);
  }
  // EventSource reconnects by itself and sends Last-Event-ID, so nothing is missed.
  const source = new EventSource(`${API}/webhook${since}`);
  source.addEventListener("ready", () => setConnection("live", "Live: receiving alerts"));
  source.addEventListener("alert", (event) => {
    const alert = JSON.parse(event.data);
    showAlert(alert, { live: true });
    if (alert.kind === "training") refresh();
  });
  source.onerror = () => setConnection("reconnecting", "Connection lost: reconnecting…");
}

// --- Model metrics and charts ---------------------------------------------------------
let runsChart;
let dailyChart;

function drawCharts(metrics) {
  const runs = metrics.runs.map((r) => ({ x: when(r.started_at), y: r.accuracy }));
  const days = Object.entries(metrics.avg_accuracy_last_7_days);
  const scales = { y: { min: 0, max: 1, title: { display: true, text: "accuracy" } } };
  if (!runsChart) {
    runsChart = new Chart(document.getElementById("runs-chart"), {
      type: "line",
      data: { labels: [], datasets: [{ label: "accuracy per run", data: [], tension: 0.2 }] },
      options: { animation: false, responsive: true, scales },
    });
    dailyChart = new Chart(document.getElementById("daily-chart"), {
      type: "bar",
      data: { labels: [], datasets: [{ label: "mean accuracy", data: [] }] },
      options: { animation: false, responsive: true, scales },
    });
  }
  runsChart.data.labels = runs.map((r) => r.x);
  runsChart.data.datasets[0].data = runs.map((r) => r.y);
  dailyChart.data.labels = days.map(([day]) => day);
  dailyChart.data.datasets[0].data = days.map(([, mean]) => mean);
  runsChart.update();
  dailyChart.update();
}

function showModel(metrics) {
  const model = metrics.latest_model;
  const fields = {
    version: model ? model.version : "none yet",
    accuracy: percent(model && model.accuracy),
    trained_at: when(model && model.trained_at),
    champion: model ? (model.is_champion ? "yes" : `no (champion: ${metrics.champion_version || "none"})`) : "–",
    weekly_average: percent(metrics.weekly_average),
  };
  for (const [name, value] of Object.entries(fields)) {
    document.querySelector(`#latest-model [data-field="${name}"]`).textContent = value;
  }
}

// --- Jobs and schedules ---------------------------------------------------------------
function showJobs(jobs) {
  document.getElementById("jobs").replaceChildren(
    ...jobs.map((job) =>
      el(
        "tr",
        { "data-job": job.job_id },
        el("td", {}, job.job_id),
        el("td", { class: `status status-${job.status}`, title: job.error || "" }, job.status),
        el("td", {}, job.model_version || "–"),
        el("td", {}, percent(job.accuracy)),
        el("td", {}, job.source),
        el("td", {}, when(job.created_at)),
      ),
    ),
  );
}

function showSchedules(schedules) {
  document.getElementById("schedules").replaceChildren(
    ...schedules.map((schedule) => {
      const cancel = el("button", { type: "button", "aria-label": `Cancel ${schedule.schedule_id}` }, "Cancel");
      cancel.addEventListener("click", async () => {
        cancel.disabled = true;
        await api(`/kill_scheduled_job/${encodeURIComponent(schedule.schedule_id)}`, { method: "DELETE" });
        refresh();
      });
      return el(
        "tr",
        { "data-schedule": schedule.schedule_id },
        el("td", {}, schedule.schedule_id),
        el("td", {}, schedule.kind),
        el("td", {}, `${schedule.minutes} min`),
        el("td", {}, when(schedule.next_run_time)),
        el("td", {}, String(schedule.runs)),
        el("td", {}, cancel),
      );
    }),
  );
}

async function refresh() {
  const results = await Promise.allSettled([
    api("/get_metrics").then((metrics) => {
      showModel(metrics);
      drawCharts(metrics);
    }),
    api("/jobs?limit=20").then(({ jobs }) => showJobs(jobs)),
    api("/scheduled_jobs").then(({ schedules }) => showSchedules(schedules)),
  ]);
  results
    .filter((r) => r.status === "rejected")
    .forEach((r) => console.warn("refresh:", r.reason.message));
}

// --- Forms ------------------------------------------------------------------------------
function handle(formId, submit) {
  const form = document.getElementById(formId);
  const result = form.querySelector(".form-result");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    result.className = "form-result";
    result.textContent = "…";
    try {
      result.textContent = await submit(new FormData(form));
      result.classList.add("ok");
      refresh();
    } catch (error) {
      result.textContent = error.message;
      result.classList.add("error");
    }
  });
}

handle("train-form", async (data) => {
  let hyperparameters = {};
  const extra = data.get("extra").trim();
  if (extra) {
    try {
      hyperparameters = JSON.parse(extra);
    } catch {
      throw new Error("Other hyperparameters must be a JSON object");
    }
  }
  for (const name of ["n_estimators", "max_depth"]) {
    if (data.get(name)) hyperparameters[name] = Number(data.get(name));
  }
  const job = await api("/trigger_training", { method: "POST", body: JSON.stringify({ hyperparameters }) });
  return `Started ${job.job_id}`;
});

handle("inference-form", async (data) => {
  const row = data.get("row").split(",").map((v) => Number(v.trim()));
  const body = { input_data: row };
  if (data.get("version").trim()) body.model_version = data.get("version").trim();
  const reply = await api("/inference", { method: "POST", body: JSON.stringify(body) });
  const best = (reply.probabilities[reply.label] * 100).toFixed(1);
  return `${reply.label} (${best}%), version ${reply.model_version}`;
});

handle("schedule-form", async (data) => {
  const minutes = Number(data.get("minutes"));
  const path = data.get("kind") === "watch" ? "/watch_model" : "/schedule_training";
  const schedule = await api(path, { method: "POST", body: JSON.stringify({ minutes, hyperparameters: {} }) });
  return `Added ${schedule.schedule_id}`;
});

followAlerts();
refresh();
setInterval(refresh, 5000);
