// The page: sign in (when the server has keys), then the playground and the live dashboard.

import {call, storeKey, storedKey} from "./api.js";
import {currentSnapshot, follow, initDashboard, render} from "./dashboard.js";
import {byId, fill, show} from "./dom.js";
import {initPlayground, updateModels} from "./playground.js";

let stream = null;  // the AbortController of the snapshot stream

function showTab(name) {
  for (const tab of ["playground", "dashboard"]) {
    show(byId(tab), tab === name);
    byId(`tab-${tab}`).setAttribute("aria-pressed", String(tab === name));
  }
  document.body.dataset.tab = name;
}

function signedIn(snap) {
  show(byId("loading"), false);
  show(byId("sign-in"), false);
  show(byId("tabs"), true);
  const who = snap.caller;
  let text = "No API keys on this server: everyone is admin.";
  if (who.authenticated) text = `Signed in as ${who.name}${who.admin ? " (admin)" : ""}`;
  fill(byId("who"), text);
  byId("who").dataset.admin = String(who.admin);
  show(byId("sign-out"), who.authenticated);
  onSnapshot(snap);
  showTab(document.body.dataset.tab || "playground");
  if (stream) stream.abort();
  stream = new AbortController();
  follow(stream.signal, onSnapshot, (err) => signInForm(`Your key was refused: ${err.message}`));
}

function onSnapshot(snap) {
  updateModels(snap.models, snap.server.default_model);
  render(snap);
}

function signInForm(message = "") {
  if (stream) stream.abort();
  stream = null;
  storeKey(null);
  show(byId("loading"), false);
  show(byId("tabs"), false);
  show(byId("playground"), false);
  show(byId("dashboard"), false);
  show(byId("sign-out"), false);
  fill(byId("who"));
  show(byId("sign-in"), true);
  fill(byId("sign-in-error"), message);
  byId("key").focus();
}

async function trySnapshot(key) {
  return call("/dashboard/snapshot", {key});
}

async function boot() {
  initPlayground();
  initDashboard();
  byId("tab-playground").addEventListener("click", () => showTab("playground"));
  byId("tab-dashboard").addEventListener("click", () => showTab("dashboard"));
  byId("sign-out").addEventListener("click", () => signInForm());
  byId("sign-in-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = byId("key");
    const key = input.value.trim();
    input.value = "";  // the key text is never kept in the page
    fill(byId("sign-in-error"));
    try {
      const snap = await trySnapshot(key);
      storeKey(key);
      signedIn(snap);
    } catch (err) {
      fill(byId("sign-in-error"), err.status === 401 || err.status === 403
        ? `Key refused: ${err.message}` : `Could not sign in: ${err.message}`);
    }
  });
  try {
    signedIn(await trySnapshot(storedKey()));
  } catch (err) {
    if (err.status === 401) signInForm(storedKey() ? "Your saved key was refused; sign in again." : "");
    else {
      show(byId("loading"), true);
      fill(byId("loading"), `The server did not answer: ${err.message}`);
    }
  }
}

window.llmserverSnapshot = currentSnapshot;  // for people poking at the page in devtools
boot();
