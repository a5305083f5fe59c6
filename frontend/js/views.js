// Rendering: each function draws one part of the page from the API's data.

import { ESTIMATORS, MAIN_HYPERPARAMETERS } from "./estimators.js";

export const when = (iso) => (iso ? new Date(iso).toLocaleString() : "–");

export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  node.append(...children);
  return node;
}

export function showAlert(list, alert, { live, keep }) {
  const item = el(
    "li",
    { class: `alert level-${alert.level}`, "data-id": alert.id },
    el("time", { datetime: alert.created_at }, when(alert.created_at)),
    el("span", { class: "level" }, alert.level),
    el("span", { class: "text" }, alert.text),
  );
  if (live) list.prepend(item);
  else list.append(item);
  while (list.children.length > keep) list.lastElementChild.remove();
}

const CONNECTION_TEXT = {
  live: "Live: receiving alerts",
  reconnecting: "Connection lost: reconnecting…",
};

// state: live, reconnecting, or down (with `reason`).
export function showConnection(node, state, reason = "") {
  node.dataset.state = state;
  node.textContent = CONNECTION_TEXT[state] || `Alerts unavailable: ${reason}`;
}

// Metrics bounded by 0 and 1, drawn on that scale; errors and r2 on their own range.
const UNIT_METRICS = new Set(["accuracy", "f1_macro"]);

// A chart's y axis for `metric`: titled with it, 0..1 for the bounded ones.
export function fitScale(scale, metric) {
  const unit = UNIT_METRICS.has(metric);
  Object.assign(scale, {
    min: unit ? 0 : undefined,
    max: unit ? 1 : undefined,
    title: { display: true, text: metric },
  });
}

export class Charts {
  constructor(runsCanvas, dailyCanvas) {
    const scales = { y: { min: 0, max: 1, title: { display: true, text: "accuracy" } } };
    const options = { animation: false, responsive: true, scales };
    this.scales = scales;
    // Chart is Chart.js's UMD build (vendor/), loaded before this module.
    this.runs = new window.Chart(runsCanvas, {
      type: "line",
      data: { labels: [], datasets: [{ label: "accuracy per run", data: [], tension: 0.2 }] },
      options,
    });
    this.daily = new window.Chart(dailyCanvas, {
      type: "bar",
      data: { labels: [], datasets: [{ label: "mean accuracy", data: [] }] },
      options,
    });
  }

  draw(metrics) {
    fitScale(this.scales.y, metrics.metric);
    this.runs.data.datasets[0].label = `${metrics.metric} per run`;
    this.daily.data.datasets[0].label = `mean ${metrics.metric}`;
    const days = Object.entries(metrics.daily_average);
    this.runs.data.labels = metrics.runs.map((r) => when(r.started_at));
    this.runs.data.datasets[0].data = metrics.runs.map((r) => r.score);
    this.daily.data.labels = days.map(([day]) => day);
    this.daily.data.datasets[0].data = days.map(([, mean]) => mean);
    this.runs.update();
    this.daily.update();
  }
}

export function showModel(container, metrics) {
  const model = metrics.latest_model;
  const champion = metrics.champion_version || "none";
  const fields = {
    version: model ? model.version : "none yet",
    score: model && model.score != null ? `${metrics.metric} ${model.score.toFixed(4)}` : "–",
    trained_at: when(model && model.trained_at),
    champion: model ? (model.is_champion ? "yes" : `no (champion: ${champion})`) : "–",
    weekly_average: fixed(metrics.weekly_average, 4),
  };
  for (const [name, value] of Object.entries(fields)) {
    container.querySelector(`[data-field="${name}"]`).textContent = value;
  }
}

const fixed = (value, digits) => (value == null ? "–" : value.toFixed(digits));

// Held-out scores, e.g. "accuracy 0.967, f1_macro 0.966" or "rmse 52.1, r2 0.452".
const scoresText = (scores) =>
  Object.entries(scores || {})
    .map(([name, value]) => `${name} ${Number(value.toPrecision(3))}`)
    .join(", ") || "–";

// The picker lists every model; `chosen` stays chosen while it exists, else the default.
export function showModelPicker(select, catalog, chosen) {
  const names = catalog.models.map((m) => m.name);
  const current = names.includes(chosen) ? chosen : catalog.default_model;
  const same = [...select.options].map((o) => o.value).join() === names.join();
  if (!same) {
    select.replaceChildren(
      ...catalog.models.map((m) => el("option", { value: m.name }, `${m.name} (${m.spec.task})`)),
    );
  }
  select.value = current;
  return current;
}

export function showJobs(body, jobs) {
  body.replaceChildren(
    ...jobs.map((job) =>
      el(
        "tr",
        { "data-job": job.job_id },
        el("td", {}, job.job_id),
        el("td", { class: `status status-${job.status}`, title: job.error || "" }, job.status),
        el("td", {}, job.model_version || "–"),
        el("td", {}, scoresText(job.scores)),
        el("td", {}, job.source),
        el("td", {}, when(job.created_at)),
        el("td", { class: "phases" }, phasesText(job.phases)),
      ),
    ),
  );
}

// "4.1 s: job start 2.9 · fit 0.2 · …", the phases that took a tenth of a second or more.
function phasesText(phases) {
  if (!phases) return "–";
  const entries = Object.entries(phases);
  const total = entries.reduce((sum, [, seconds]) => sum + seconds, 0);
  const shown = entries
    .filter(([, seconds]) => seconds >= 0.1)
    .map(([name, seconds]) => `${name.replace("_", " ")} ${seconds.toFixed(1)}`);
  return `${total.toFixed(1)} s: ${shown.join(" · ")}`;
}

// `cancel(id)` removes a schedule; when it fails, the row says why and its button
// can be pressed again.
export function showSchedules(body, schedules, cancel) {
  body.replaceChildren(
    ...schedules.map((schedule) => {
      const id = schedule.schedule_id;
      const button = el("button", { type: "button", "aria-label": `Cancel ${id}` }, "Cancel");
      const problem = el("span", { class: "row-error", role: "status" });
      button.addEventListener("click", async () => {
        button.disabled = true;
        problem.textContent = "";
        try {
          await cancel(id);
        } catch (error) {
          problem.textContent = error.message;
          button.disabled = false;
        }
      });
      return el(
        "tr",
        { "data-schedule": id },
        el("td", {}, id),
        el("td", {}, schedule.kind),
        el("td", {}, schedule.cron
          ? `${schedule.cron} (${schedule.timezone})`
          : `every ${schedule.minutes} min`),
        el("td", {}, when(schedule.next_run_time)),
        el("td", {}, String(schedule.runs)),
        el("td", {}, button, problem),
      );
    }),
  );
}


// `promote(version)` moves the champion; a failure shows in the row, the button stays.
// The inference form follows the champion: its feature names, in order, and a row of
// the right length (a row typed for another model is cleared, not sent to fail).
export function showFeatures(hint, input, list) {
  const champion = list.versions.find((v) => v.version === list.champion_version);
  if (!champion || !champion.features.length) {
    hint.textContent = "No champion yet: train a model first.";
    return;
  }
  const names = champion.features;
  hint.textContent = `Version ${champion.version} takes ${names.length} features: ${names.join(", ")}`;
  input.placeholder = names.join(", ");
  const given = input.value.split(",").filter((v) => v.trim() !== "");
  if (given.length && given.length !== names.length && !input.matches(":focus")) input.value = "";
}

export function showModels(body, list, promote) {
  body.replaceChildren(
    ...list.versions.map((version) => {
      const isChampion = version.version === list.champion_version;
      const actions = el("td");
      if (!isChampion) {
        const button = el("button", { type: "button", "aria-label": `Promote version ${version.version}` }, "Promote");
        const problem = el("span", { class: "row-error", role: "status" });
        button.addEventListener("click", async () => {
          button.disabled = true;
          problem.textContent = "";
          try {
            await promote(version.version);
          } catch (error) {
            problem.textContent = error.message;
            button.disabled = false;
          }
        });
        actions.append(button, problem);
      }
      return el(
        "tr",
        { "data-version": version.version, class: isChampion ? "champion" : "" },
        el("td", {}, version.version),
        el("td", {}, scoresText(version.scores)),
        el("td", {}, when(version.created_at)),
        el("td", {}, version.aliases.join(", ") || "–"),
        el("td", { title: version.promotion_reason || "" }, version.promotion || "–"),
        actions,
      );
    }),
  );
}

// The champion's moves and the retraining policy's steps, newest first, one list.
export function showHistory(list, { moves, retraining = [] }) {
  const entries = [
    ...moves.map((move) => {
      const from = move.from_version ? `${move.from_version} → ` : "";
      const text = `${from}${move.to_version} by ${move.by}: ${move.reason}`;
      return { at: move.at, attrs: { "data-action": move.action }, label: move.action, text };
    }),
    ...retraining.map((step) => ({
      at: step.at,
      attrs: { "data-step": step.step },
      label: `retraining ${step.step.replaceAll("_", " ")}`,
      text: step.detail,
    })),
  ].sort((a, b) => Date.parse(b.at) - Date.parse(a.at));
  list.replaceChildren(
    ...entries.map(({ at, attrs, label, text }) =>
      el(
        "li",
        attrs,
        el("time", { datetime: at }, when(at)),
        el("span", { class: "level" }, label),
        el("span", { class: "text" }, text),
      ),
    ),
  );
}

export function showDrift(verdict, body, report) {
  verdict.dataset.verdict = report.verdict;
  const version = report.model_version ? `version ${report.model_version}: ` : "";
  verdict.textContent = `${report.verdict} (${version}${report.detail})`;
  body.replaceChildren(
    ...report.features.map((feature) =>
      el(
        "tr",
        { "data-feature": feature.feature, class: feature.drifting ? "drifting" : "" },
        el("td", {}, feature.feature),
        el("td", {}, fixed(feature.psi, 3)),
        el("td", {}, feature.ks_pvalue.toPrecision(2)),
        el("td", {}, feature.drifting ? "yes" : "no"),
      ),
    ),
  );
}

// A form whose `submit(FormData, progress)` returns the text to show, or throws the
// error to show; `progress(text)` shows what it is doing meanwhile.
export function handleForm(form, submit, onDone) {
  const result = form.querySelector(".form-result");
  const button = form.querySelector("button[type=submit]");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    result.className = "form-result";
    result.textContent = "…";
    button.disabled = true; // one submission at a time (a prediction may wait for serving)
    try {
      const progress = (text) => {
        result.textContent = text;
      };
      result.textContent = await submit(new FormData(form), progress);
      result.classList.add("ok");
      onDone();
    } catch (error) {
      result.textContent = error.message;
      result.classList.add("error");
    } finally {
      button.disabled = false;
    }
  });
}

// The train form asks for the chosen model's main hyperparameters by name, keeping what
// was typed while the model stays the same.
export function showTrainParameters(hint, container, model) {
  const estimator = model ? model.spec.estimator : null;
  const shown = model ? `${model.name}/${estimator}` : "";
  if (container.dataset.shown === shown) return;
  container.dataset.shown = shown;
  hint.textContent = model ? `${model.name}: ${model.spec.task}, ${estimator}` : "";
  container.replaceChildren(
    ...(MAIN_HYPERPARAMETERS[estimator] || []).flatMap((p) => {
      const id = `param-${p.name.replace(/_/g, "-")}`;
      const input = el("input", {
        id, name: p.name, type: "number", placeholder: p.placeholder, "data-parameter": p.name,
      });
      if (p.min != null) input.min = String(p.min);
      if (p.step) input.step = p.step;
      return [el("label", { for: id }, p.label), input];
    }),
  );
}

// The estimators a new model of the chosen task may use.
export function showEstimatorChoices(select, task) {
  const keep = select.value;
  select.replaceChildren(...ESTIMATORS[task].map((e) => el("option", { value: e }, e)));
  if (ESTIMATORS[task].includes(keep)) select.value = keep;
}
