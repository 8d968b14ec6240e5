// The operators' page: every call is an API call with the operator's platform-admin key
// and, for registering, approving and rejecting, a WebAuthn ceremony (navigator.credentials).
"use strict";

const $ = (id) => document.getElementById(id);
const status = (text) => { $("status").textContent = text; };

function key() { return sessionStorage.getItem("accrue-key") || ""; }

async function api(method, path, body) {
  const response = await fetch(path, {
    method,
    headers: Object.assign({ "Authorization": "Bearer " + key() }, body ? { "Content-Type": "application/json" } : {}),
    body: body ? JSON.stringify(body) : undefined,
  });
  const answer = response.status === 204 ? {} : await response.json();
  if (!response.ok) { throw new Error(answer.detail || answer.title || ("HTTP " + response.status)); }
  return answer;
}

async function whoami() {
  try {
    const me = await api("GET", "/v1/platform/operators/me");
    $("whoami").textContent = "Signed in as " + me.name + " (" + me.operatorId + "), " + me.credentials.length +
      " security key(s)" + (me.awaitingBootstrapKey ? "; register your first security key below" : "");
  } catch (error) { $("whoami").textContent = error.message; }
}

async function registerKey() {
  const name = $("newcomer-name").value.trim();
  try {
    const me = await api("GET", "/v1/platform/operators/me");
    const options = await api("POST", "/v1/platform/operators/registration-options",
      name ? { name } : { operatorId: me.operatorId });
    const credential = await navigator.credentials.create({
      publicKey: PublicKeyCredential.parseCreationOptionsFromJSON(options.publicKey) });
    const done = await api("POST", "/v1/platform/operators/registrations",
      { challengeId: options.challengeId, credential: credential.toJSON(),
        reason: name ? "register newcomer " + name : "another security key for " + me.name });
    status(done.operator ? "Security key registered (bootstrap)." :
      "Registration filed as request " + done.request.id + ": approvals needed.");
    await whoami();
    await refresh();
  } catch (error) { status("Registration failed: " + error.message); }
}

async function decide(id, verb) {
  try {
    const options = await api("GET", "/v1/platform/approvals/" + id + "/assertion-options");
    const assertion = await navigator.credentials.get({
      publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(options) });
    const done = await api("POST", "/v1/platform/approvals/" + id + "/" + verb, { assertion: assertion.toJSON() });
    let text = "Request " + id + " is " + done.status + ".";
    if (done.result) { text += " Result (shown once): " + JSON.stringify(done.result); }
    status(text);
    await refresh();
  } catch (error) { status(verb + " failed: " + error.message); }
}

function describe(request) {
  const block = document.createElement("div");
  block.className = "request";
  block.dataset.id = request.id;
  block.dataset.status = request.status;
  const title = document.createElement("h3");
  title.textContent = request.id + ": " + request.action + (request.tenantId ? " of tenant " + request.tenantId : "") +
    " — " + request.status;
  const what = document.createElement("pre");
  what.textContent = JSON.stringify({ reason: request.reason, params: request.params,
    requestedBy: request.requestedBy.operator + " (" + request.requestedBy.operatorId + ")",
    approvals: (request.approvals || []).map((a) => a.operatorId + " with key " + a.credentialId),
    expiresAt: request.expiresAt, challenge: request.challenge }, null, 2);
  block.append(title, what);
  if (request.status === "pending") {
    for (const verb of ["approve", "reject"]) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = verb;
      button.textContent = verb === "approve" ? "Approve with my security key" : "Reject with my security key";
      button.addEventListener("click", () => decide(request.id, verb));
      block.append(button);
    }
  }
  return block;
}

async function refresh() {
  try {
    const page = await api("GET", "/v1/platform/approvals?limit=50");
    $("requests").replaceChildren(...page.items.map(describe));
  } catch (error) { status("Could not list requests: " + error.message); }
}

$("use-key").addEventListener("click", async () => {
  sessionStorage.setItem("accrue-key", $("api-key").value.trim());
  $("api-key").value = "";
  await whoami();
  await refresh();
});
$("register-key").addEventListener("click", registerKey);
$("refresh").addEventListener("click", refresh);
if (key()) { whoami(); refresh(); }
