// The dashboard: live alerts over SSE, model metrics as charts, live performance and
// rollouts, jobs, schedules and a try-it form. This module wires the transport, the
// state and the views together.

import { api, followAlerts, token } from "./transport.js";
import { RecentIds } from "./state.js";
import { LiveChart, showLive, showRollout } from "./live.js";
import {
  Charts,
  handleForm,
  showAlert,
  showConnection,
  showDrift,
  showFeatures,
  showHistory,
  showJobs,
  showModel,
  showEstimatorChoices,
  showModelPicker,
  showModels,
  showSchedules,
  showTrainParameters,
} from "./views.js";

const ALERTS_SHOWN = 100;
const REFRESH_MS = 5000;
// After a first training the API takes a while to start serving: a prediction waits.
const SERVING_READY_WITHIN_MS = 60_000;

const byId = (id) => document.getElementById(id);
const alertList = byId("alerts");
const connection = byId("connection");
const seenAlerts = new RecentIds(ALERTS_SHOWN * 10);
let charts;
let liveChart;
let model = ""; // the model every card follows; "" until the catalog has been read

// A path of the chosen model's lifecycle, e.g. modelPath("/history").
const modelPath = (rest) => `/models/${encodeURIComponent(model)}${rest}`;
// A request body for the chosen model; before the catalog is read, the default one.
const withModel = (body) => (model ? { model, ...body } : body);
const forModel = (path) => `${path}${path.includes("?") ? "&" : "?"}model=${encodeURIComponent(model)}`;

function showTokenState() {
  const state = byId("token-state");
  const saved = Boolean(token.get());
  state.textContent = saved ? "API token saved" : "No API token: training and schedules need it";
  state.dataset.state = saved ? "saved" : "missing";
}

function onAlert(alert, { live }) {
  if (!seenAlerts.add(alert.id)) return;
  showAlert(alertList, alert, { live, keep: ALERTS_SHOWN });
  if (live && alert.kind === "training") refresh();
}

async function startAlerts() {
  let since = "";
  try {
    const { alerts } = await api("/alerts?limit=50");
    alerts.forEach((alert) => onAlert(alert, { live: false }));
    if (alerts.length) since = alerts[0].id;
  } catch (error) {
    showConnection(connection, "down", error.message);
  }
  followAlerts({
    since,
    onAlert: (alert) => onAlert(alert, { live: true }),
    onState: (state) => showConnection(connection, state),
  });
}

async function cancelSchedule(id) {
  await api(`/kill_scheduled_job/${encodeURIComponent(id)}`, { method: "DELETE" });
  refresh();
}

// Moving the champion needs a reason: the one typed in the models card.
function moveReason() {
  const reason = byId("move-reason").value.trim();
  if (!reason) {
    byId("move-reason").focus();
    throw new Error("Give a reason for the move (it goes into the history)");
  }
  return reason;
}

async function promoteVersion(version) {
  const body = JSON.stringify({ reason: moveReason() });
  await api(modelPath(`/versions/${encodeURIComponent(version)}/promote`), { method: "POST", body });
  refresh();
}

async function refresh() {
  try {
    const catalog = await api("/models");
    model = showModelPicker(byId("model-picker"), catalog, model);
    const chosen = catalog.models.find((m) => m.name === model);
    showTrainParameters(byId("train-estimator"), byId("train-parameters"), chosen);
  } catch (error) {
    console.warn("refresh:", error.message);
    if (!model) return;
  }
  const results = await Promise.allSettled([
    api(forModel("/get_metrics")).then((metrics) => {
      showModel(byId("latest-model"), metrics);
      charts = charts || new Charts(byId("runs-chart"), byId("daily-chart"));
      charts.draw(metrics);
    }),
    api(forModel("/jobs?limit=20")).then(({ jobs }) => showJobs(byId("jobs"), jobs)),
    api("/scheduled_jobs").then(({ schedules }) => {
      const models = schedules.filter((schedule) => schedule.model === model);
      showSchedules(byId("schedules"), models, cancelSchedule);
    }),
    api(modelPath("/versions")).then((list) => {
      showModels(byId("models"), list, promoteVersion);
      showFeatures(byId("inference-features"), byId("inference-row"), list);
    }),
    api(modelPath("/history?limit=20")).then((history) => showHistory(byId("history"), history)),
    api(forModel("/drift")).then((report) => showDrift(byId("drift-verdict"), byId("drift"), report)),
    api(modelPath("/performance")).then((report) => {
      liveChart = liveChart || new LiveChart(byId("live-chart"));
      liveChart.draw(report);
      showLive(byId("live"), report);
    }),
    api(modelPath("/rollouts")).then((report) => showRollout(byId("rollout"), report)),
  ]);
  results
    .filter((r) => r.status === "rejected")
    .forEach((r) => console.warn("refresh:", r.reason.message));
  document.body.dataset.refreshes = Number(document.body.dataset.refreshes || 0) + 1;
}

function readHyperparameters(data) {
  let hyperparameters = {};
  const extra = data.get("extra").trim();
  if (extra) {
    try {
      hyperparameters = JSON.parse(extra);
    } catch {
      throw new Error("Other hyperparameters must be a JSON object");
    }
  }
  for (const input of byId("train-parameters").querySelectorAll("[data-parameter]")) {
    if (input.value) hyperparameters[input.dataset.parameter] = Number(input.value);
  }
  return hyperparameters;
}

function wireForms() {
  byId("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    token.set(byId("api-token").value.trim());
    byId("api-token").value = "";
    showTokenState();
  });
  handleForm(byId("train-form"), async (data) => {
    const body = JSON.stringify(withModel({ hyperparameters: readHyperparameters(data) }));
    const job = await api("/trigger_training", { method: "POST", body });
    return `Started ${job.job_id}`;
  }, refresh);
  handleForm(byId("inference-form"), async (data, progress) => {
    const body = withModel({ input_data: data.get("row").split(",").map((v) => Number(v.trim())) });
    if (data.get("version").trim()) body.model_version = data.get("version").trim();
    const reply = await api("/inference", {
      method: "POST",
      body: JSON.stringify(body),
      readyWithin: SERVING_READY_WITHIN_MS,
      onWait: (reason) => progress(`${reason} (asking again)`),
    });
    const served = `${reply.model} version ${reply.model_version}`;
    if (reply.label == null) return `${reply.prediction.toPrecision(4)}, ${served}`;
    const best = (reply.probabilities[reply.label] * 100).toFixed(1);
    return `${reply.label} (${best}%), ${served}`;
  }, refresh);
  handleForm(byId("champion-form"), async () => {
    const body = JSON.stringify({ reason: moveReason() });
    if (!model) throw new Error("The models are still loading: try again in a moment");
    const move = await api(modelPath("/rollback"), { method: "POST", body });
    return `Rolled back from version ${move.from_version} to ${move.to_version}`;
  }, refresh);
  const task = byId("new-model-task");
  showEstimatorChoices(byId("new-model-estimator"), task.value);
  task.addEventListener("change", () => showEstimatorChoices(byId("new-model-estimator"), task.value));
  handleForm(byId("new-model-form"), async (data) => {
    const body = JSON.stringify(Object.fromEntries(data.entries()));
    const created = await api("/models", { method: "POST", body });
    model = created.name; // the new model's cards, at once
    return `Created ${created.name}: ${created.spec.task}, ${created.spec.estimator}`;
  }, refresh);
  handleForm(byId("schedule-form"), async (data) => {
    const cron = data.get("cron").trim();
    const when = cron
      ? { cron, timezone: data.get("timezone").trim() || "UTC" }
      : { minutes: Number(data.get("minutes")) };
    const paths = { training: "/schedule_training", watch: "/watch_model", drift: "/watch_drift" };
    const path = paths[data.get("kind")];
    const body = JSON.stringify(withModel(when));
    const schedule = await api(path, { method: "POST", body });
    return `Added ${schedule.schedule_id}`;
  }, refresh);
}

token.adoptFromAddress();
showTokenState();
wireForms();
byId("model-picker").addEventListener("change", (event) => {
  model = event.target.value;
  refresh();
});
startAlerts();
refresh();
setInterval(refresh, REFRESH_MS);
