"""The dashboard in a real browser, against the running local platform."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from helpers import (
    API_TOKEN,
    Relay,
    api_client,
    free_port,
    serve_a_champion,
    wait_for,
    wait_for_job,
)
from playwright.sync_api import Browser, Page, expect
from sklearn.datasets import load_wine

from mlops.local import components
from mlops.local.supervisor import Supervisor
from mlops.settings.platform import PlatformSettings

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the page's pictures go: a temporary folder, or MLOPS_SCREENSHOT_DIR
    (`make screenshots` points it at images/ to refresh the README's pictures)."""
    given = os.environ.get("MLOPS_SCREENSHOT_DIR")
    return Path(given) if given else tmp_path_factory.mktemp("screenshots")


def _newest_alert(page: Page) -> str | None:
    return page.eval_on_selector("#alerts", "list => list.firstElementChild?.dataset.id ?? null")


def test_page_goes_live_with_no_console_errors(open_page) -> None:
    page, console = open_page()

    expect(page.locator("#connection")).to_have_text("Live: receiving alerts")
    # One refresh of metrics, jobs and schedules has drawn.
    expect(page.locator("body[data-refreshes]")).to_have_count(1)
    assert console.problems == [], "\n".join(console.problems)


def test_training_from_the_form_shows_the_job_and_the_alert_in_two_pages(open_page) -> None:
    first, first_console = open_page()
    second, second_console = open_page()
    before = _newest_alert(second)

    first.fill("#param-n-estimators", "25")
    first.click("#train-form button[type=submit]")

    result = first.locator("#train-form .form-result")
    expect(result).to_contain_text("Started train-", timeout=10_000)
    job_id = result.inner_text().removeprefix("Started ").strip()
    expect(first.locator(f'#jobs tr[data-job="{job_id}"]')).to_be_visible(timeout=10_000)
    newest = second.locator("#alerts li").first
    expect(newest).to_contain_text("Latest model accuracy was", timeout=90_000)
    assert _newest_alert(second) != before
    assert _newest_alert(first) == _newest_alert(second)
    expect(first.locator(f'#jobs tr[data-job="{job_id}"] .status')).to_have_text(
        "succeeded", timeout=15_000
    )
    problems = first_console.problems + second_console.problems
    assert problems == [], "\n".join(problems)


def test_a_write_without_the_token_asks_for_it_and_works_once_it_is_saved(
    open_page, api_url: str
) -> None:
    page, _ = open_page(token=None)
    expect(page.locator("#token-state")).to_have_attribute("data-state", "missing")

    page.click("#train-form button[type=submit]")

    result = page.locator("#train-form .form-result")
    expect(result).to_contain_text("needs the API token")
    expect(result).to_contain_text("Paste the API token")
    page.fill("#api-token", API_TOKEN)
    page.click("#token-form button[type=submit]")
    expect(page.locator("#token-state")).to_have_attribute("data-state", "saved")
    page.click("#train-form button[type=submit]")
    expect(result).to_contain_text("Started train-", timeout=10_000)
    job_id = result.inner_text().removeprefix("Started ").strip()
    with api_client(api_url) as api:
        wait_for_job(api, job_id)  # finished here, not during the next test


def test_the_token_in_the_link_is_kept_and_leaves_the_address_bar(open_page) -> None:
    page, _ = open_page()

    assert "token" not in page.url
    expect(page.locator("#token-state")).to_have_text("API token saved")
    assert page.evaluate("localStorage.getItem('mlops.apiToken')") == API_TOKEN


def test_charts_render_with_data(open_page, api_url: str, screenshots: Path) -> None:
    with api_client(api_url) as api:
        if not api.get("/get_metrics").json()["runs"]:
            job_id = api.post("/trigger_training", json={"hyperparameters": {}}).json()["job_id"]
            wait_for_job(api, job_id)
    page, _ = open_page()
    # Polled from here: the page's Content-Security-Policy forbids wait_for_function's eval.
    wait_for(
        lambda: page.evaluate(
            "Chart.getChart(document.getElementById('runs-chart'))?.data.labels.length > 0"
        ),
        timeout=15,
        what="the runs chart to have data",
    )

    runs = page.evaluate(
        "Chart.getChart(document.getElementById('runs-chart')).data.datasets[0].data"
    )
    days = page.evaluate("Chart.getChart(document.getElementById('daily-chart')).data.labels")

    assert runs and all(0 <= accuracy <= 1 for accuracy in runs)
    assert len(days) >= 1
    expect(page.locator('#latest-model [data-field="version"]')).not_to_have_text("–")
    page.screenshot(path=str(screenshots / "dashboard.png"), full_page=True)


def test_cancelling_a_schedule_removes_it(open_page, api_url: str) -> None:
    page, console = open_page()
    page.select_option("#schedule-kind", "watch")
    page.fill("#schedule-minutes", "120")
    page.click("#schedule-form button[type=submit]")
    result = page.locator("#schedule-form .form-result")
    expect(result).to_contain_text("Added watch-")
    schedule_id = result.inner_text().removeprefix("Added ").strip()
    row = page.locator(f'#schedules tr[data-schedule="{schedule_id}"]')
    expect(row).to_be_visible()

    row.get_by_role("button", name=f"Cancel {schedule_id}").click()

    expect(row).to_have_count(0)
    listed = httpx.get(f"{api_url}/scheduled_jobs").json()["schedules"]
    assert schedule_id not in {s["schedule_id"] for s in listed}
    assert console.problems == [], "\n".join(console.problems)


def test_a_schedule_at_cron_times_shows_its_expression_and_zone(open_page, api_url: str) -> None:
    page, console = open_page()
    page.select_option("#schedule-kind", "drift")
    page.fill("#schedule-cron", "0 2 * * 1-5")
    page.fill("#schedule-timezone", "Europe/Paris")
    page.click("#schedule-form button[type=submit]")
    result = page.locator("#schedule-form .form-result")
    expect(result).to_contain_text("Added drift-")
    schedule_id = result.inner_text().removeprefix("Added ").strip()
    row = page.locator(f'#schedules tr[data-schedule="{schedule_id}"]')

    expect(row).to_contain_text("0 2 * * 1-5 (Europe/Paris)")
    page.fill("#schedule-timezone", "Europe/Atlantis")
    page.click("#schedule-form button[type=submit]")
    expect(result).to_contain_text("IANA time zone")
    row.get_by_role("button", name=f"Cancel {schedule_id}").click()
    expect(row).to_have_count(0)
    assert [p for p in console.problems if "422" not in p] == [], "\n".join(console.problems)


def test_try_inference_form_answers_with_the_champion(
    open_page, api: httpx.Client, api_url: str
) -> None:
    page, _ = open_page()
    # Nobody ran serve.py: the API deploys Serve by itself once a champion exists.
    serve_a_champion(api)

    champion = httpx.get(f"{api_url}/get_metrics").json()["champion_version"]
    # Replicas follow a new champion within their reload period: wait for it to answer.
    wait_for(
        lambda: (
            httpx.post(
                f"{api_url}/inference", json={"input_data": [6.7, 3.0, 5.2, 2.3]}, timeout=30
            )
            .json()
            .get("model_version")
            == champion
        ),
        timeout=60,
        what="the champion to be served",
    )
    # The form names the champion's features, from its registered version.
    features = next(
        v["features"]
        for v in httpx.get(f"{api_url}/models/iris/versions").json()["versions"]
        if v["version"] == champion
    )
    expect(page.locator("#inference-features")).to_contain_text(
        f"Version {champion} takes {len(features)} features: {', '.join(features)}"
    )
    page.click("#inference-form button[type=submit]")

    expect(page.locator("#inference-form .form-result")).to_contain_text(
        "Virginica", timeout=60_000
    )
    assert f"version {champion}" in page.inner_text("#inference-form .form-result")


def test_a_prediction_waits_while_the_api_starts_serving(
    browser: Browser, start_api, api: httpx.Client, settings: PlatformSettings, tmp_path: Path
) -> None:
    """Right after a first training the API may still be starting serving: it answers
    503 with Retry-After, and the form says so and asks again until serving answers.
    Here a second API and its dashboard reach the session's Serve through a relay that
    lets them through only once the form has waited."""
    serve_a_champion(api)
    relay = Relay(urlsplit(settings.serve_url).port or 8000, up=False)
    relay.start()
    supervisor = Supervisor(tmp_path / "logs")
    page = browser.new_page()
    try:
        client, _ = start_api(serve_url=f"http://127.0.0.1:{relay.port}", auto_serve=True)
        local = settings.model_copy(
            update={
                "api_port": client.base_url.port,
                "dashboard_port": free_port(),
                "data_dir": tmp_path,
            }
        )
        supervisor.wait_ready([supervisor.start(components.dashboard(local))], timeout=30)
        page.goto(f"http://127.0.0.1:{local.dashboard_port}/#token={API_TOKEN}")
        result = page.locator("#inference-form .form-result")
        submit = page.locator("#inference-form button[type=submit]")

        submit.click()
        expect(result).to_contain_text("being started", timeout=15_000)
        expect(result).to_contain_text("(asking again)")
        expect(submit).to_be_disabled()  # one prediction at a time while it waits
        relay.restore()

        expect(result).to_contain_text("Virginica", timeout=30_000)
        assert "ok" in (result.get_attribute("class") or "")
        expect(submit).to_be_enabled()
    finally:
        page.close()
        supervisor.stop_all()
        relay.stop()


def test_live_performance_shows_labelled_traffic_beside_held_out_scores(
    open_page, api_url: str
) -> None:
    row, label = [6.7, 3.0, 5.2, 2.3], "Virginica"
    with api_client(api_url) as api:
        if not api.get("/get_metrics").json()["runs"]:
            job_id = api.post("/trigger_training", json={"hyperparameters": {}}).json()["job_id"]
            wait_for_job(api, job_id)
        answers = wait_for(
            lambda: (r := api.post("/inference", json={"input_data": row})).is_success and r,
            timeout=90,
            what="the champion to answer",
        )
        ids = [answers.json()["prediction_id"]]
        ids += [
            api.post("/inference", json={"input_data": row}).json()["prediction_id"]
            for _ in range(9)
        ]
        items = [{"prediction_id": i, "label": label} for i in ids]
        wait_for(
            lambda: (
                api.post("/feedback", json={"items": items}).json()["counts"].get("unknown") is None
            ),
            timeout=10,
            what="the predictions recorded and labelled",
        )
        champion = answers.json()["model_version"]
    page, console = open_page()
    wait_for(
        lambda: page.evaluate(
            "Chart.getChart(document.getElementById('live-chart'))?.data.labels.length > 0"
        ),
        timeout=15,
        what="the live chart to have data",
    )

    live = page.evaluate(
        "Chart.getChart(document.getElementById('live-chart')).data.datasets[0].data"
    )
    box = page.locator("#live-chart").bounding_box()
    assert box and 100 < box["height"] <= 320  # bounded, not as tall as the card is wide
    row_of_champion = page.locator(f'#live tr[data-version="{champion}"]')
    expect(row_of_champion).to_contain_text("(champion)")
    expect(page.locator("#rollout")).to_have_attribute("data-state", "none")
    assert any(value is not None and 0 <= value <= 1 for value in live)
    assert console.problems == [], "\n".join(console.problems)


def test_bad_hyperparameters_show_the_api_message(open_page) -> None:
    page, _ = open_page()

    page.fill("#extra-params", '{"n_estimator": 5}')
    page.click("#train-form button[type=submit]")

    expect(page.locator("#train-form .form-result.error")).to_contain_text(
        "unknown hyperparameter 'n_estimator'"
    )


def test_phone_width_fits_without_sideways_scrolling(
    open_page, screenshots: Path, api_url: str, settings: PlatformSettings
) -> None:
    longest = "wine-" + "x" * 58  # a model name at its longest, in the model picker
    definition = {
        "name": longest,
        "dataset_uri": str(_wine_csv(settings)),
        "target_column": "target",
    }
    assert api_client(api_url).post("/models", json=definition).status_code in {201, 409}
    page, console = open_page(width=390, height=844)
    page.wait_for_selector(f'#model-picker option[value="{longest}"]', state="attached")

    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")

    wide = page.evaluate(
        """[...document.querySelectorAll('body *')]
             .filter(e => e.getBoundingClientRect().right > window.innerWidth
                          && !e.closest('.table-scroll'))
             .map(e => `${e.tagName}#${e.id}.${e.className}`)"""
    )
    assert overflow <= 0, wide
    if api_client(api_url).get("/get_metrics").json()["runs"]:  # the picture with its data
        wait_for(
            lambda: page.evaluate(
                "Chart.getChart(document.getElementById('runs-chart'))?.data.labels.length > 0"
            ),
            timeout=15,
            what="the runs chart to have data",
        )
    page.screenshot(path=str(screenshots / "dashboard-phone.png"), full_page=True)
    assert console.problems == [], "\n".join(console.problems)


def test_labels_name_every_control(open_page) -> None:
    page, _ = open_page()

    unlabeled = page.evaluate(
        """[...document.querySelectorAll('input, select')]
             .filter(c => !c.labels.length && !c.getAttribute('aria-label'))
             .map(c => c.id || c.name)"""
    )

    assert unlabeled == []


def test_a_plain_eventsource_onmessage_page_receives_alerts(
    browser, dashboard_url: str, api_url: str
) -> None:
    """The original dashboard's way: `new EventSource(url).onmessage`, nothing more."""
    page = browser.new_page()
    plain = f"{dashboard_url}plain-client.html"  # served by the test, on the dashboard's origin
    page.route(
        plain,
        lambda route: route.fulfill(
            content_type="text/html",
            body="""<ul id="got"></ul><script>
              new EventSource("/api/webhook").onmessage = (event) => {
                const item = document.createElement("li");
                item.textContent = JSON.parse(event.data).text;
                document.getElementById("got").append(item);
              };
            </script>""",
        ),
    )
    page.goto(plain)
    with api_client(api_url) as api:
        watch = api.post("/watch_model", json={"minutes": 1}).json()["schedule_id"]
        try:
            # A watch alerts within a (test) minute of one second.
            expect(page.locator("#got li").first).to_contain_text("odel", timeout=15_000)
        finally:
            api.delete(f"/kill_scheduled_job/{watch}")
    page.close()


def test_a_cancel_that_fails_says_why_and_can_be_pressed_again(open_page, api_url: str) -> None:
    page, _ = open_page()
    with api_client(api_url) as api:
        schedule_id = api.post("/watch_model", json={"minutes": 600}).json()["schedule_id"]
    row = page.locator(f'#schedules tr[data-schedule="{schedule_id}"]')
    expect(row).to_be_visible(timeout=10_000)
    button = row.get_by_role("button", name=f"Cancel {schedule_id}")
    # The browser's own network layer answers this one DELETE with an outage.
    page.route(
        f"**/api/kill_scheduled_job/{schedule_id}",
        lambda route: route.fulfill(
            status=503, content_type="application/json", body='{"detail": "Redis is unavailable"}'
        ),
    )

    button.click()

    expect(row.locator(".row-error")).to_have_text("Redis is unavailable")
    expect(button).to_be_enabled()
    page.unroute(f"**/api/kill_scheduled_job/{schedule_id}")
    button.click()
    expect(row).to_have_count(0, timeout=10_000)


def test_the_set_of_seen_alerts_stays_bounded(open_page) -> None:
    page, _ = open_page()

    size, readded = page.evaluate(
        """async () => {
             const { RecentIds } = await import("/js/state.js");
             const ids = new RecentIds(3);
             ["a", "b", "c", "d", "e"].forEach((id) => ids.add(id));
             return [ids.size, ids.add("a")];
           }"""
    )

    assert size == 3
    assert readded is True  # the oldest were forgotten


def test_promote_and_roll_back_from_the_models_card(open_page, api_url: str) -> None:
    with api_client(api_url) as api:
        while len(api.get("/models/iris/versions").json()["versions"]) < 2:
            accepted = api.post("/trigger_training", json={"hyperparameters": {"random_state": 1}})
            wait_for_job(api, accepted.json()["job_id"])
        listed = api.get("/models/iris/versions").json()
    champion = listed["champion_version"]
    other = next(v["version"] for v in listed["versions"] if v["version"] != champion)
    page, console = open_page()
    row = page.locator(f'#models tr[data-version="{other}"]')
    expect(row).to_be_visible(timeout=10_000)

    row.get_by_role("button", name=f"Promote version {other}").click()
    expect(row.locator(".row-error")).to_contain_text("Give a reason")
    page.fill("#move-reason", "checking the dashboard")
    row.get_by_role("button", name=f"Promote version {other}").click()
    expect(page.locator(f'#models tr.champion[data-version="{other}"]')).to_be_visible(
        timeout=10_000
    )
    newest = page.locator("#history li").first
    expect(newest).to_contain_text(f"{champion} → {other} by api: checking the dashboard")
    page.click("#rollback")

    expect(page.locator("#champion-form .form-result")).to_contain_text(
        f"Rolled back from version {other} to {champion}"
    )
    expect(page.locator(f'#models tr.champion[data-version="{champion}"]')).to_be_visible()
    expect(page.locator("#drift-verdict")).not_to_have_text("–")
    assert console.problems == [], "\n".join(console.problems)


def _wine_csv(settings: PlatformSettings) -> Path:
    path = settings.data_dir / "wine-dashboard.csv"
    if not path.exists():
        load_wine(as_frame=True).frame.to_csv(path, index=False)
    return path


def test_a_model_created_in_the_form_is_trained_beside_iris(
    open_page, api_url: str, settings: PlatformSettings
) -> None:
    page, console = open_page()
    name = f"wine-{uuid.uuid4().hex[:6]}"
    page.fill("#new-model-name", name)
    page.fill("#new-model-dataset", str(_wine_csv(settings)))
    page.fill("#new-model-target", "target")
    page.select_option("#new-model-task", "regression")
    regression = page.locator("#new-model-estimator option").all_inner_texts()
    page.select_option("#new-model-task", "classification")
    page.select_option("#new-model-estimator", "logistic_regression")
    page.click("#new-model-form button[type=submit]")
    expect(page.locator("#new-model-form .form-result")).to_have_text(
        f"Created {name}: classification, logistic_regression"
    )

    expect(page.locator("#model-picker")).to_have_value(name)
    expect(page.locator("#train-estimator")).to_contain_text("logistic_regression")
    expect(page.locator("#param-n-estimators")).to_have_count(0)
    page.fill("#param-max-iter", "300")
    page.click("#train-form button[type=submit]")
    result = page.locator("#train-form .form-result")
    expect(result).to_contain_text("Started train-", timeout=10_000)
    api = api_client(api_url)
    job = wait_for_job(api, result.inner_text().removeprefix("Started ").strip())
    assert (job["model"], job["hyperparameters"]["max_iter"]) == (name, 300), job
    schedule = api.post("/schedule_training", json={"model": name, "minutes": 600}).json()
    expect(page.locator("#inference-features")).to_contain_text(
        "takes 13 features: alcohol", timeout=15_000
    )
    expect(page.locator("#live-chart")).to_be_hidden()  # no labels: the table says so
    wine_job = page.locator(f'#jobs tr[data-job="{job["job_id"]}"]')
    wine_schedule = page.locator(f'#schedules tr[data-schedule="{schedule["schedule_id"]}"]')
    expect(wine_job).to_be_visible(timeout=10_000)
    expect(wine_schedule).to_be_visible(timeout=10_000)
    page.select_option("#model-picker", "iris")
    expect(page.locator("#inference-features")).to_contain_text("sepal.length", timeout=10_000)
    expect(wine_job).to_have_count(0)  # every card follows the chosen model
    expect(wine_schedule).to_have_count(0)
    api.delete(f"/kill_scheduled_job/{schedule['schedule_id']}").raise_for_status()
    expect(page.locator("#param-n-estimators")).to_be_visible()
    assert regression == ["random_forest", "extra_trees", "hist_gradient_boosting", "ridge"]
    assert console.problems == [], "\n".join(console.problems)
