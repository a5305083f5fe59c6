// Talking to the API: every call goes through /api/ on this origin (nginx proxies it),
// writes carry the API token, and alerts arrive over one EventSource.

const API = "/api";
const TOKEN_KEY = "mlops.apiToken";

export class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

export const token = {
  get: () => localStorage.getItem(TOKEN_KEY),
  set(value) {
    if (value) localStorage.setItem(TOKEN_KEY, value);
    else localStorage.removeItem(TOKEN_KEY);
  },
  // `make up` prints a link ending in #token=…: keep it, and drop it from the address bar.
  adoptFromAddress() {
    const match = location.hash.match(/(?:^#|&)token=([^&]+)/);
    if (!match) return;
    this.set(decodeURIComponent(match[1]));
    history.replaceState(null, "", location.href.split("#")[0]);
  },
};

function describeError(body) {
  const detail = body && body.detail;
  if (!detail) return "";
  if (typeof detail === "string") return detail;
  return detail.map((d) => `${d.loc.slice(1).join(".")}: ${d.msg}`).join("; ");
}

async function send(path, init) {
  const headers = { "Content-Type": "application/json" };
  const saved = token.get();
  if (saved) headers.Authorization = `Bearer ${saved}`;
  return fetch(`${API}${path}`, { ...init, headers });
}

// How long a 503 asks the caller to wait, in ms (the API's Retry-After is in seconds);
// null when the answer is not "getting ready, ask again".
function readyAfterMs(response) {
  const seconds = Number(response.headers.get("Retry-After") ?? NaN);
  return response.status === 503 && seconds >= 0 ? seconds * 1000 : null;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// One API call. With `readyWithin` (ms), a 503 that carries Retry-After (the API is
// still starting serving) is asked again after the wait it names, until that time is
// spent; `onWait(reason)` tells the page why it waits.
export async function api(path, { readyWithin = 0, onWait = () => {}, ...init } = {}) {
  const deadline = Date.now() + readyWithin;
  for (;;) {
    const response = await send(path, init);
    const body = await response.json().catch(() => ({}));
    if (response.ok) return body;
    const reason = describeError(body) || `${response.status} ${response.statusText}`;
    const wait = readyAfterMs(response);
    if (wait !== null && Date.now() + wait <= deadline) {
      onWait(reason);
      await sleep(wait);
      continue;
    }
    const hint = response.status === 401 ? ". Paste the API token in the field at the top." : "";
    throw new ApiError(`${reason}${hint}`, response.status);
  }
}

// Alerts are unnamed events (`onmessage`); `ready` opens the stream. EventSource
// reconnects by itself with Last-Event-ID, so nothing is missed.
export function followAlerts({ since, onAlert, onState }) {
  const query = since ? `?since=${encodeURIComponent(since)}` : "";
  const source = new EventSource(`${API}/webhook${query}`);
  source.addEventListener("ready", () => onState("live"));
  source.onmessage = (event) => onAlert(JSON.parse(event.data));
  source.onerror = () => onState("reconnecting");
  return source;
}
