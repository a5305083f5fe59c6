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

export async function api(path, options = {}) {
  const headers = { "Content-Type": "application/json" };
  const saved = token.get();
  if (saved) headers.Authorization = `Bearer ${saved}`;
  const response = await fetch(`${API}${path}`, { ...options, headers });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const reason = describeError(body) || `${response.status} ${response.statusText}`;
    const hint = response.status === 401 ? ". Paste the API token in the field at the top." : "";
    throw new ApiError(`${reason}${hint}`, response.status);
  }
  return body;
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
