// Online Mart's one script (no inline script anywhere: the Content-Security-Policy forbids it).
// Pages work without it; it adds: one submission per form, confirmations, the live order status,
// the console's live event stream, and Stripe's Payment Element when configured.
"use strict";

// A form marked data-once is sent once: its buttons are disabled as it goes (a double click sends one
// request; the order form also carries an Idempotency-Key, so a resubmission makes no second order).
document.addEventListener("submit", (event) => {
  const form = event.target;
  if (!(form instanceof HTMLFormElement)) return;
  const question = form.dataset.confirm;
  if (question && !window.confirm(question)) {
    event.preventDefault();
    return;
  }
  if (form.hasAttribute("data-once")) {
    if (form.dataset.sent === "1") {
      event.preventDefault();
      return;
    }
    form.dataset.sent = "1";
    // once this submit event is over, so that the clicked button's own name/value still goes with the form
    setTimeout(() => form.querySelectorAll("button, input[type=submit]").forEach((b) => { b.disabled = true; }), 0);
  }
  // A form inside a live block (pay, decline, cancel) is sent without leaving the page: the outcome arrives
  // through the block's event stream. Without a stream update soon after, the page reloads to show it.
  const live = form.closest("[data-live]");
  if (live && form.method.toLowerCase() === "post") {
    event.preventDefault();
    const sentAt = Date.now();
    fetch(form.action, { method: "POST", body: new FormData(form), credentials: "same-origin", redirect: "manual" })
      .then(() => setTimeout(() => {
        if (Number(live.dataset.updated || 0) < sentAt) window.location.reload();
      }, 8000))
      .catch(() => HTMLFormElement.prototype.submit.call(form));
  }
});

// The order page: the server pushes the status block as it changes (Server-Sent Events).
for (const block of document.querySelectorAll("[data-live]")) {
  const source = new EventSource(block.dataset.live);
  source.addEventListener("status", (event) => {
    block.innerHTML = event.data; // rendered and escaped by the server's templates
    block.dataset.updated = String(Date.now());
    startStripe(block);
  });
}

// The console's live events: decoded records, newest first, shown as text.
const MAX_ROWS = 500;
for (const table of document.querySelectorAll("[data-event-stream]")) {
  const rows = table.querySelector("tbody");
  const state = document.querySelector("[data-event-state]");
  const say = (text) => { if (state) state.textContent = text; };
  const source = new EventSource(table.dataset.eventStream);
  source.addEventListener("ready", () => say("Following: new events appear at the top."));
  source.addEventListener("record", (event) => {
    const record = JSON.parse(event.data);
    const row = document.createElement("tr");
    row.dataset.testid = "event-row";
    const cells = [
      (record.headers && record.headers.ce_time) || "",
      `${record.topic}[${record.partition}]@${record.offset}`,
      record.key || "",
      (record.type || "?").split(".").pop(),
    ];
    for (const text of cells) {
      const cell = document.createElement("td");
      cell.textContent = text;
      row.appendChild(cell);
    }
    const payload = document.createElement("td");
    const pre = document.createElement("pre");
    pre.textContent = record.payload ? JSON.stringify(record.payload, null, 1) : (record.error || "");
    payload.appendChild(pre);
    row.appendChild(payload);
    rows.prepend(row);
    while (rows.children.length > MAX_ROWS) rows.lastElementChild.remove();
  });
  source.onerror = () => say("Reconnecting…");
}

// Stripe's Payment Element (test mode), when the order waits for a Stripe payment.
function startStripe(root) {
  const box = root.querySelector("[data-stripe]");
  if (!box || box.dataset.started) return;
  box.dataset.started = "1";
  const error = box.querySelector("[data-stripe-error]");
  const button = box.querySelector("[data-stripe-pay]");
  fetch(box.dataset.stripe, { credentials: "same-origin", headers: { accept: "application/json" } })
    .then((answer) => (answer.ok ? answer.json() : Promise.reject(new Error("no payment waiting"))))
    .then((intent) => loadStripe().then(() => {
      const stripe = window.Stripe(intent.publishable_key);
      const elements = stripe.elements({ clientSecret: intent.client_secret });
      elements.create("payment").mount(box.querySelector("#payment-element"));
      button.disabled = false;
      button.addEventListener("click", () => {
        button.disabled = true;
        stripe.confirmPayment({ elements, confirmParams: { return_url: window.location.origin + intent.return_url } })
          .then((result) => {
            if (result.error) { error.textContent = result.error.message; button.disabled = false; }
          });
      });
    }))
    .catch((problem) => { error.textContent = `Payment cannot start: ${problem.message}`; });
}

function loadStripe() {
  if (window.Stripe) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const script = document.createElement("script");
    script.src = "https://js.stripe.com/v3/";
    script.onload = resolve;
    script.onerror = () => reject(new Error("Stripe.js did not load"));
    document.head.appendChild(script);
  });
}

startStripe(document);
