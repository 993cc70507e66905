// Billy's page: live state, the drawn fish, his voice (simulation), persona, care and settings.
// Plain JavaScript, no build step. Everything Billy says arrives on one EventSource (/events);
// every change goes out as a JSON POST carrying the CSRF token.
"use strict";

const $ = (id) => document.getElementById(id);
const CSRF = document.querySelector('meta[name="csrf-token"]').content;
const LEVELS = JSON.parse(document.body.dataset.levels);
const TRAITS = ["humor", "sarcasm", "honesty", "respectfulness", "optimism",
  "confidence", "warmth", "curiosity", "verbosity", "formality"];
const LATENCY_PARTS = [
  ["endpoint", "end of speech"], ["stt", "speech to text"], ["llm_first_sentence", "brain"],
  ["tts_first_audio", "voice"], ["output_latency", "speaker"],
];
// What the page saw, for people debugging (and the tests): states in order, mouth moves drawn.
const trace = (window.billyTrace = { states: [], mouthOpened: 0, mouthMax: 0, audioChunks: 0 });

let billy = { connected: false, ready: false, persona: null, personas: [], songs: [] };

// --- requests ------------------------------------------------------------------------------

async function call(method, url, body) {
  const options = { method, credentials: "same-origin", headers: { "X-CSRFToken": CSRF } };
  if (method === "POST") {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body || {});
  }
  const response = await fetch(url, options);
  if (response.status === 401) {
    window.location = "/login";
    throw new Error("Log in first.");
  }
  let data = {};
  try { data = await response.json(); } catch (e) { /* not JSON */ }
  if (!response.ok) {
    const error = new Error(data.error || `The page answered HTTP ${response.status}.`);
    error.data = data;
    throw error;
  }
  return data;
}
const post = (url, body) => call("POST", url, body);
const get = (url) => call("GET", url);

function say(element, text, bad) {
  element.textContent = text;
  element.classList.toggle("error", Boolean(bad));
}

async function act(statusElement, promise, done) {
  try {
    const data = await promise;
    if (done) say(statusElement, typeof done === "function" ? done(data) : done);
    return data;
  } catch (error) {
    say(statusElement, error.message, true);
    return null;
  }
}

// --- the drawn fish, moved by motion cues on the page's clock --------------------------------

const DELAY_S = 0.25;            // jitter buffer: cues and voice play this long after they arrive
let clockOffset = null;          // page seconds minus Billy seconds (smallest seen)
let audio = null;                // AudioContext, once the user switched the voice on
const cues = [];
const target = { mouth: 0, head: 0, tail: 0 };
const shown = { mouth: 0, head: 0, tail: 0 };

function pageNow() { return performance.now() / 1000; }
function noteClock(now) {
  const offset = pageNow() - now;
  if (clockOffset === null || offset < clockOffset) clockOffset = offset;
}
function audioLag() {
  return audio ? (audio.baseLatency || 0) + (audio.outputLatency || 0) : 0;
}
function pageTime(t) { return t + (clockOffset || 0) + DELAY_S; }

function addCue(message) {
  const cue = { at: pageTime(message.t) + audioLag(), motor: message.motor, value: message.value };
  let i = cues.length;
  while (i > 0 && cues[i - 1].at > cue.at) i -= 1;
  cues.splice(i, 0, cue);
  if (cues.length > 5000) cues.splice(0, cues.length - 5000);
}

function drawFish() {
  const now = pageNow();
  while (cues.length && cues[0].at <= now) {
    const cue = cues.shift();
    target[cue.motor] = cue.value;
    if (cue.motor === "mouth" && cue.value > 0) trace.mouthOpened += 1;
  }
  for (const motor of ["mouth", "head", "tail"]) shown[motor] += (target[motor] - shown[motor]) * 0.6;
  trace.mouthMax = Math.max(trace.mouthMax, shown.mouth);
  $("fish-jaw").setAttribute("transform", `rotate(${(-shown.mouth * 26).toFixed(1)} 120 117)`);
  $("fish-body").setAttribute("transform", `rotate(${(shown.head * 9).toFixed(1)} 300 110)`);
  $("fish-tail").setAttribute("transform",
    `rotate(${(shown.head * 9).toFixed(1)} 300 110) rotate(${(shown.tail * 24).toFixed(1)} 292 110)`);
}

function playAudio(message) {
  trace.audioChunks += 1;
  if (!audio || audio.state !== "running") return;
  const bytes = atob(message.pcm);
  const samples = new Float32Array(bytes.length / 2);
  for (let i = 0; i < samples.length; i += 1) {
    let v = bytes.charCodeAt(2 * i) | (bytes.charCodeAt(2 * i + 1) << 8);
    if (v >= 32768) v -= 65536;
    samples[i] = v / 32768;
  }
  const buffer = audio.createBuffer(1, samples.length, message.rate);
  buffer.copyToChannel(samples, 0);
  const source = audio.createBufferSource();
  source.buffer = buffer;
  source.connect(audio.destination);
  const when = audio.currentTime + (pageTime(message.t) - pageNow());
  if (when < audio.currentTime - 0.05) return; // too late to be in time with the mouth
  source.start(Math.max(when, audio.currentTime));
}

// --- live events -------------------------------------------------------------------------------

function setState(state) {
  const badge = $("state");
  badge.textContent = state.replace("_", " ");
  badge.dataset.state = state;
}

function renderBanner() {
  const down = !billy.connected || !billy.ready;
  $("down").hidden = !down;
  document.body.classList.toggle("billy-down", down);
  if (!down) return;
  const starting = billy.connected || billy.starting;
  $("down-text").textContent = starting
    ? "Billy is starting: loading his models…"
    : "Billy is not running.";
  $("start-billy").hidden = starting;
  const words = billy.last_words || [];
  $("last-words").hidden = starting || words.length === 0;
  $("last-words").textContent = words.join("\n");
}

function renderTurn(turn) {
  if (!turn) return;
  $("turn-transcript").textContent = turn.transcript || "—";
  $("turn-reply").textContent = turn.reply || (turn.error ? `(${turn.error})` : "—");
  $("turn-tools").textContent = (turn.tools || []).join(", ") || "none";
  const latency = turn.latency_ms || {};
  const bar = $("latency");
  const legend = $("latency-legend");
  bar.replaceChildren();
  legend.replaceChildren();
  const parts = LATENCY_PARTS.filter(([key]) => latency[key] > 0).map(([key, label]) => [key, label, latency[key]]);
  const counted = parts.reduce((sum, part) => sum + part[2], 0);
  const total = latency.end_of_speech_to_first_audio || counted;
  if (total > counted + 1) parts.push(["other", "the rest", total - counted]);
  const scale = Math.max(total, counted) || 1;
  for (const [key, label, ms] of parts) {
    const segment = document.createElement("span");
    segment.className = `part part-${key}`;
    segment.style.width = `${(100 * ms) / scale}%`;
    segment.title = `${label}: ${Math.round(ms)} ms`;
    bar.append(segment);
    const item = document.createElement("span");
    item.className = `key part-${key}`;
    item.textContent = `${label} ${Math.round(ms)} ms`;
    legend.append(item);
  }
  const sum = document.createElement("strong");
  sum.textContent = total ? `to first sound: ${Math.round(total)} ms` : "";
  legend.append(sum);
}

const LOG_LEVELS = { DEBUG: 10, INFO: 20, WARNING: 30, ERROR: 40, CRITICAL: 50 };
let logLines = [];
function logText(line) {
  const time = new Date(line.time * 1000).toLocaleTimeString();
  return `${time} ${line.level.padEnd(7)} ${line.name}: ${line.message}\n`;
}
function renderLog() {
  const least = Number($("log-level").value);
  const pre = $("log");
  pre.textContent = logLines.filter((l) => (LOG_LEVELS[l.level] || 20) >= least).map(logText).join("");
  pre.scrollTop = pre.scrollHeight;
}
function addLog(line) {
  logLines.push(line);
  if (logLines.length > 500) logLines = logLines.slice(-400);
  if ((LOG_LEVELS[line.level] || 20) >= Number($("log-level").value)) {
    const pre = $("log");
    const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    pre.append(logText(line));
    if (atBottom) pre.scrollTop = pre.scrollHeight;
  }
}

function renderSongs() {
  const list = $("songs");
  list.replaceChildren();
  for (const song of billy.songs || []) {
    const item = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = "Play";
    button.addEventListener("click", () =>
      act($("care-status"), post("/api/song", { song: song.name }), `Playing ${song.title}.`));
    item.append(button, ` ${song.title}`);
    list.append(item);
  }
  if (!list.children.length) list.textContent = "No songs installed (sounds/songs/).";
}

function handle(message) {
  if (typeof message.now === "number") noteClock(message.now);
  switch (message.type) {
    case "snapshot":
      billy = { ...billy, ...message };
      setState(message.state || "offline");
      renderBanner();
      $("voice-row").hidden = !message.simulated_audio;
      renderTurn(message.last_turn);
      renderSongs();
      logLines = message.logs || [];
      renderLog();
      personasChanged(message.persona, message.personas);
      break;
    case "state":
      trace.states.push(message.state);
      setState(message.state);
      break;
    case "turn": renderTurn(message); break;
    case "motion": addCue(message); break;
    case "audio": playAudio(message); break;
    case "mic": $("mic-level").style.width = `${Math.max(0, Math.min(100, (message.level + 70) * 1.5))}%`; break;
    case "persona": personasChanged(message.persona, message.personas); break;
    case "log": addLog(message); break;
    default: break;
  }
}

let source = null;
function listen() {
  source = new EventSource("/events?audio=1");
  source.onmessage = (event) => handle(JSON.parse(event.data));
  source.onerror = () => {
    if (source.readyState === EventSource.CLOSED) setTimeout(async () => {
      try { await get("/api/status"); } catch (e) { /* 401 sends us to the login */ }
      listen();
    }, 2000);
  };
}

async function pollWhileDown() {
  if (!billy.connected) {
    try {
      const status = await get("/api/status");
      billy.starting = status.starting;
      renderBanner();
    } catch (e) { /* the page itself is restarting */ }
  }
  setTimeout(pollWhileDown, 2000);
}

// --- persona editor ------------------------------------------------------------------------

function levelName(value) {
  for (const [limit, name] of LEVELS) if (value < limit) return name;
  return "max";
}

function buildTraits() {
  const box = $("traits");
  for (const trait of TRAITS) {
    const row = document.createElement("label");
    row.className = "trait";
    row.innerHTML = `<span class="trait-name"></span><input type="range" min="0" max="100" step="1">
      <output></output>`;
    row.querySelector(".trait-name").textContent = trait;
    const slider = row.querySelector("input");
    slider.id = `trait-${trait}`;
    const out = row.querySelector("output");
    out.id = `trait-${trait}-level`;
    slider.addEventListener("input", () => { out.textContent = `${slider.value} ${levelName(Number(slider.value))}`; });
    box.append(row);
  }
}

function addFact(key = "", value = "") {
  const row = document.createElement("div");
  row.className = "fact";
  const k = document.createElement("input");
  k.className = "fact-key";
  k.maxLength = 40;
  k.placeholder = "fact";
  k.value = key;
  const v = document.createElement("input");
  v.className = "fact-value";
  v.maxLength = 300;
  v.value = value;
  const remove = document.createElement("button");
  remove.type = "button";
  remove.className = "quiet";
  remove.textContent = "Remove";
  remove.addEventListener("click", () => row.remove());
  row.append(k, v, remove);
  $("backstory").append(row);
}

function fillPersona(persona) {
  for (const trait of TRAITS) {
    const slider = $(`trait-${trait}`);
    slider.value = persona.traits[trait];
    slider.dispatchEvent(new Event("input"));
  }
  $("display-name").value = persona.display_name || "";
  $("instructions").value = persona.instructions || "";
  $("backstory").replaceChildren();
  for (const [key, value] of Object.entries(persona.backstory || {})) addFact(key, value);
  $("wakeup").value = (persona.wakeup || []).join("\n");
}

function selected() { return $("persona-select").value; }

async function loadPersona(name) {
  const data = await act($("persona-status"), get(`/api/personas/${encodeURIComponent(name)}`));
  if (data) fillPersona(data.persona);
}

function personasChanged(persona, names) {
  const current = persona ? persona.name : null;
  billy.persona = persona;
  const select = $("persona-select");
  const keep = select.value;
  select.replaceChildren();
  for (const name of names || []) {
    const option = document.createElement("option");
    option.value = name;
    option.textContent = name === current ? `${name} (in use)` : name;
    select.append(option);
  }
  const choice = (names || []).includes(keep) ? keep : current;
  if (choice) select.value = choice;
  $("persona-name").textContent = persona ? `as ${persona.display_name} (${persona.name})` : "";
  $("persona-active").textContent = current ? `in use: ${current}` : "";
  $("persona-delete").disabled = select.value === current;
  if (persona && select.value === current && !document.getElementById("personality").dataset.dirty) fillPersona(persona);
}

function personaEdit() {
  const traits = {};
  for (const trait of TRAITS) traits[trait] = Number($(`trait-${trait}`).value);
  const backstory = {};
  for (const row of $("backstory").querySelectorAll(".fact")) {
    const key = row.querySelector(".fact-key").value.trim();
    if (key) backstory[key] = row.querySelector(".fact-value").value;
  }
  return {
    traits,
    backstory,
    display_name: $("display-name").value,
    instructions: $("instructions").value,
    wakeup: $("wakeup").value.split("\n").map((l) => l.trim()).filter(Boolean),
  };
}

function personaButtons() {
  const section = $("personality");
  section.addEventListener("input", () => { section.dataset.dirty = "1"; });
  $("persona-select").addEventListener("change", () => {
    delete section.dataset.dirty;
    $("persona-delete").disabled = billy.persona && selected() === billy.persona.name;
    loadPersona(selected());
  });
  $("fact-add").addEventListener("click", () => addFact());
  $("persona-save").addEventListener("click", async () => {
    const name = selected();
    const data = await act($("persona-status"), post(`/api/personas/${encodeURIComponent(name)}`, personaEdit()),
      `Saved ${name}: Billy uses it from his next turn.`);
    if (data) delete section.dataset.dirty;
  });
  $("persona-use").addEventListener("click", () =>
    act($("persona-status"), post(`/api/personas/${encodeURIComponent(selected())}/use`),
      `Billy is now ${selected()}.`));
  const newName = () => $("persona-new-name").value.trim();
  $("persona-copy").addEventListener("click", async () => {
    const name = newName();
    const data = await act($("persona-status"), post("/api/personas", { name, source: selected() }), `Made ${name}.`);
    if (data) { $("persona-select").value = name; loadPersona(name); }
  });
  $("persona-rename").addEventListener("click", () =>
    act($("persona-status"), post(`/api/personas/${encodeURIComponent(selected())}/rename`,
      { new_name: newName() }), `Renamed to ${newName()}.`));
  $("persona-delete").addEventListener("click", () => {
    const name = selected();
    if (!window.confirm(`Delete persona ${name}? (It is moved to the persona folder's .trash.)`)) return;
    act($("persona-status"), post(`/api/personas/${encodeURIComponent(name)}/delete`), `Deleted ${name}.`);
  });
}

// --- settings --------------------------------------------------------------------------------

const APPLIES = { live: "applies at once", page: "the page restarts", restart: "restart Billy to apply" };

async function loadSettings() {
  const data = await act($("settings-status"), get("/api/settings"));
  if (!data) return;
  const form = $("settings-form");
  form.replaceChildren();
  for (const group of data.groups) {
    const box = document.createElement("fieldset");
    const legend = document.createElement("legend");
    legend.textContent = group.title;
    box.append(legend);
    for (const field of group.fields) {
      const row = document.createElement("div");
      row.className = "setting";
      const label = document.createElement("label");
      label.htmlFor = `set-${field.name}`;
      label.textContent = field.name;
      const input = document.createElement("input");
      input.id = `set-${field.name}`;
      input.name = field.name;
      input.dataset.original = field.value;
      input.autocomplete = "off";
      if (field.secret) {
        input.type = "password";
        input.placeholder = field.is_set ? "set: leave empty to keep" : "not set";
      } else {
        input.value = field.value;
        input.placeholder = field.default ? `default: ${field.default}` : "";
      }
      const help = document.createElement("small");
      help.textContent = `${field.help} (${APPLIES[field.applies]}${field.overridden
        ? "; also set in the environment, which wins" : ""})`;
      const error = document.createElement("span");
      error.className = "error field-error";
      error.id = `err-${field.name}`;
      row.append(label, input);
      if (field.secret && field.is_set) {
        const clear = document.createElement("label");
        clear.className = "check";
        clear.innerHTML = '<input type="checkbox" class="clear-secret"> clear';
        clear.querySelector("input").dataset.name = field.name;
        row.append(clear);
      }
      row.append(help, error);
      box.append(row);
    }
    form.append(box);
  }
}

async function saveSettings() {
  const values = {};
  for (const input of $("settings-form").querySelectorAll("input[name]")) {
    if (input.type === "password" ? input.value : input.value !== input.dataset.original) values[input.name] = input.value;
  }
  const clear = [...$("settings-form").querySelectorAll(".clear-secret:checked")].map((c) => c.dataset.name);
  for (const span of $("settings-form").querySelectorAll(".field-error")) span.textContent = "";
  try {
    const data = await post("/api/settings", { values, clear });
    let text = data.saved.length ? `Saved ${data.saved.join(", ")}.` : "Nothing changed.";
    if (data.restart.length) text += ` Restart Billy to apply ${data.restart.join(", ")}.`;
    if (data.page_restarts) {
      text += " The page restarts now.";
      const port = values.FLASK_PORT;
      setTimeout(() => {
        window.location = port ? `${location.protocol}//${location.hostname}:${port}/` : "/";
      }, 3000);
    }
    say($("settings-status"), text);
    loadSettings();
  } catch (error) {
    say($("settings-status"), error.message, true);
    for (const [name, message] of Object.entries((error.data && error.data.errors) || {})) {
      const span = $(`err-${name}`);
      if (span) span.textContent = message;
    }
  }
}

// --- wiring ----------------------------------------------------------------------------------

function wire() {
  $("say-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = await act($("action-status"), post("/api/say", { text: $("say-text").value }), "Billy will say it.");
    if (data) $("say-text").value = "";
  });
  $("talk-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = await act($("action-status"), post("/api/talk", { text: $("talk-text").value }),
      "Billy is thinking about it.");
    if (data) $("talk-text").value = "";
  });
  for (const button of document.querySelectorAll("[data-command]")) {
    button.addEventListener("click", () => {
      const command = button.dataset.command;
      if (command === "shutdown" && !window.confirm("Stop Billy? He stays stopped until started again.")) return;
      act($("care-status"), post("/api/command", { command }), `Sent ${command}.`);
    });
  }
  $("speaker-test").addEventListener("click", () =>
    act($("care-status"), post("/api/test/speaker"), "Billy says a test line."));
  $("motor-test").addEventListener("click", () =>
    act($("care-status"), post("/api/test/motors"), (d) => `Moving mouth, head and tail (${d.seconds.toFixed(1)} s).`));
  let metering = false;
  $("mic-toggle").addEventListener("click", async () => {
    const data = await act($("care-status"), post("/api/mic", { on: !metering }));
    if (data) { metering = !metering; $("mic-meter").hidden = !metering; }
  });
  $("start-billy").addEventListener("click", () =>
    act($("start-status"), post("/api/start"), (d) => `${d.message} He is ready in a few seconds.`));
  $("log-level").addEventListener("change", renderLog);
  $("voice-on").addEventListener("change", async (event) => {
    if (event.target.checked) {
      audio = audio || new AudioContext();
      await audio.resume();
    } else if (audio) {
      await audio.suspend();
    }
  });
  $("settings-details").addEventListener("toggle", (event) => { if (event.target.open) loadSettings(); });
  $("settings-save").addEventListener("click", saveSettings);
}

buildTraits();
personaButtons();
wire();
listen();
pollWhileDown();
setInterval(drawFish, 33);
