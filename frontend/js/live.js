// Live performance: each version's metric on labelled traffic (POST /feedback) beside
// its held-out score, and the model's rollout, if any.

import { el, fitScale, when } from "./views.js";

const fixed = (value) => (value == null ? "–" : Number(value.toPrecision(4)).toString());

export class LiveChart {
  constructor(canvas) {
    this.box = canvas.parentElement; // shown once some version has labels
    this.scales = { y: { title: { display: true, text: "metric" } } };
    // Chart is Chart.js's UMD build (vendor/), loaded before this module.
    this.chart = new window.Chart(canvas, {
      type: "bar",
      data: {
        labels: [],
        datasets: [
          { label: "live (last hour)", data: [] },
          { label: "held out at training", data: [] },
        ],
      },
      // The box sets the height; the chart fills it.
      options: { animation: false, responsive: true, maintainAspectRatio: false, scales: this.scales },
    });
  }

  draw(report) {
    fitScale(this.scales.y, report.metric);
    const versions = [...report.versions].reverse(); // oldest on the left
    this.box.hidden = versions.length === 0; // the table below says there are no labels
    this.chart.data.labels = versions.map((v) => `v${v.version}${v.is_champion ? " ★" : ""}`);
    this.chart.data.datasets[0].data = versions.map((v) => v.live[report.metric]?.value ?? null);
    this.chart.data.datasets[1].data = versions.map((v) => v.offline);
    this.chart.update();
  }
}

export function showLive(table, report) {
  const rows = report.versions.map((v) => {
    const live = v.live[report.metric] || {};
    return el(
      "tr",
      { "data-version": v.version },
      el("td", {}, v.is_champion ? `${v.version} (champion)` : v.version),
      el("td", {}, String(v.labels)),
      el("td", {}, `${fixed(live.value)} [${fixed(live.low)}, ${fixed(live.high)}]`),
      el("td", {}, fixed(v.offline)),
    );
  });
  if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: "4" }, "No labels in the last hour.")));
  table.replaceChildren(...rows);
}

// The rollout in progress (or the last one), in one line: sides, labels, test.
export function showRollout(node, report) {
  if (!report.rollout) {
    node.dataset.state = "none";
    node.textContent = "No rollout.";
    return;
  }
  const { rollout, difference: d } = report;
  const state = report.active ? "active" : report.ended.outcome;
  node.dataset.state = state;
  const sides =
    `${rollout.mode} of version ${rollout.version} at ${rollout.percent}% beside ` +
    `version ${rollout.champion_version}, since ${when(rollout.started_at)}`;
  const labels = `labels ${report.challenger.labels} / ${report.champion.labels}`;
  const test = d
    ? `difference ${fixed(d.value)} [${fixed(d.low)}, ${fixed(d.high)}]: ${report.decision}`
    : "no labelled pairs yet";
  const agreement = report.agreement == null ? "" : `; agreement ${fixed(report.agreement)}`;
  const end = report.active ? "in progress" : `${state}: ${report.ended.reason}`;
  node.textContent = `${sides}; ${labels}; ${test}${agreement}. ${end}`;
}
