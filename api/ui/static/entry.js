// Order entry (/ui/orders/new): checks the draft as it is typed, with the server's own rules.
// The page is a plain form that works without this file; this only saves round trips.
// Posts the whole form (with its CSRF token) to /ui/orders/new/check and puts the HTML
// fragments of the answer in place. Enter moves on (SKU -> quantity -> next SKU),
// Ctrl+Enter creates the order (in the paste box: adds the pasted lines).
"use strict";
(function () {
  const form = document.getElementById("entry");
  if (!form || !window.fetch || !form.requestSubmit) return;
  const rows = document.getElementById("rows");
  const customer = document.getElementById("customer");
  const find = document.getElementById("find");
  const MAX_ROWS = 500;
  let timer = 0;
  let findTimer = 0;
  let sent = 0;

  function put(id, html) {
    const el = document.getElementById(id);
    if (el && el.innerHTML !== html) el.innerHTML = html;
  }

  function busy(on) {
    form.toggleAttribute("data-busy", on);
  }

  function schedule(delay) {
    clearTimeout(timer);
    busy(true);
    timer = setTimeout(check, delay);
  }

  async function check() {
    clearTimeout(timer);
    const mine = ++sent;
    busy(true);
    const body = new URLSearchParams(new FormData(form));
    body.delete("paste");
    body.delete("find");
    let answer = null;
    try {
      const r = await fetch(form.dataset.check, {
        method: "POST",
        body: body,
        credentials: "same-origin",
        headers: { Accept: "application/json" },
      });
      if ((r.headers.get("content-type") || "").indexOf("json") >= 0) answer = await r.json();
      else if (r.redirected) window.location.reload(); // signed out meanwhile
    } catch (err) {
      answer = null; // offline: the buttons still work when it is back
    }
    if (mine !== sent) return; // a newer check is on its way
    if (answer) apply(answer);
    busy(false);
  }

  function apply(a) {
    put("customer-facts", a.html.customer);
    put("problems", a.html.problems);
    put("totals", a.html.totals);
    const options = document.getElementById("customer-options");
    options.replaceChildren(
      ...a.customer_matches.map(function (m) {
        const o = document.createElement("option");
        o.value = m.code;
        o.textContent = m.name;
        return o;
      })
    );
    // A SKU typed in another case becomes the product's own, once you have left the field.
    for (const line of a.lines) {
      const input = document.getElementById("sku-" + line.row);
      const typed = input ? input.value.trim() : "";
      if (line.product && typed !== line.sku && typed.toUpperCase() === line.sku.toUpperCase()
          && document.activeElement !== input) input.value = line.sku;
    }
    const badRows = new Set(a.problems.filter((p) => p.row !== null).map((p) => String(p.row)));
    for (const tr of rows.rows) {
      const i = tr.dataset.row;
      if (i in a.html.lines) put("facts-" + i, a.html.lines[i]);
      for (const input of tr.querySelectorAll("input")) {
        if (badRows.has(i)) input.setAttribute("aria-invalid", "true");
        else input.removeAttribute("aria-invalid");
      }
    }
    form.dataset.valid = a.valid ? "yes" : "no";
    form.dataset.checks = String(Number(form.dataset.checks || 0) + 1);
  }

  function isBlank(tr) {
    return Array.from(tr.querySelectorAll("input")).every((i) => !i.value.trim());
  }

  // Always an empty row below the last filled one, to type into.
  function ensureBlankRow() {
    const last = rows.rows[rows.rows.length - 1];
    if (isBlank(last) || rows.rows.length >= MAX_ROWS) return;
    const i = rows.rows.length;
    const tr = last.cloneNode(true);
    tr.dataset.row = String(i);
    tr.cells[0].textContent = String(i + 1);
    for (const label of tr.querySelectorAll("label")) {
      label.htmlFor = label.htmlFor.replace(/\d+$/, String(i));
      label.textContent = label.textContent.replace(/\d+$/, String(i + 1));
    }
    for (const input of tr.querySelectorAll("input")) {
      input.id = input.id.replace(/\d+$/, String(i));
      input.value = "";
      input.removeAttribute("aria-invalid");
      input.removeAttribute("autofocus");
      input.setAttribute("aria-describedby", "facts-" + i);
    }
    const facts = tr.querySelector(".facts");
    facts.id = "facts-" + i;
    facts.innerHTML = "";
    rows.appendChild(tr);
  }

  function firstEmptySku() {
    for (const tr of rows.rows) if (isBlank(tr)) return tr.querySelector("input[name=sku]");
    ensureBlankRow();
    return rows.rows[rows.rows.length - 1].querySelector("input[name=sku]");
  }

  function nextField(el) {
    if (el === customer) return firstEmptySku();
    const m = /^(sku|qty)-(\d+)$/.exec(el.id);
    if (!m) return null;
    if (m[1] === "sku") return document.getElementById("qty-" + m[2]);
    ensureBlankRow();
    return document.getElementById("sku-" + (Number(m[2]) + 1));
  }

  async function search() {
    clearTimeout(findTimer);
    const q = find.value.trim();
    if (!q) {
      put("found", "");
      return;
    }
    try {
      const r = await fetch(form.dataset.products + "?q=" + encodeURIComponent(q), {
        credentials: "same-origin",
        headers: { Accept: "application/json" },
      });
      if ((r.headers.get("content-type") || "").indexOf("json") < 0) return;
      const a = await r.json();
      if (find.value.trim() === q) put("found", a.html);
    } catch (err) {
      /* the Find button still works */
    }
  }

  form.addEventListener("input", function (e) {
    const name = e.target.name;
    if (name === "find") {
      clearTimeout(findTimer);
      findTimer = setTimeout(search, 200);
      return;
    }
    if (name === "paste") return;
    if (name === "sku" || name === "qty") ensureBlankRow();
    schedule(name === "customer" ? 200 : 150);
  });

  form.addEventListener("keydown", function (e) {
    if (e.key !== "Enter" || e.isComposing) return;
    const el = e.target;
    if (e.ctrlKey || e.metaKey) {
      e.preventDefault();
      const button = el.id === "paste" ? "button[value=paste]" : "#create";
      form.requestSubmit(form.querySelector(button));
      return;
    }
    if (el.tagName !== "INPUT") return; // a textarea's new line, a button's click
    e.preventDefault();
    if (el === find) {
      search();
      return;
    }
    const next = nextField(el);
    check();
    if (next) next.focus();
  });

  form.addEventListener("click", function (e) {
    const b = e.target.closest("button");
    if (!b) return;
    if (b.dataset.pick) {
      e.preventDefault();
      customer.value = b.dataset.pick;
      check();
      firstEmptySku().focus();
    } else if (b.dataset.add) {
      e.preventDefault();
      const sku = firstEmptySku();
      sku.value = b.dataset.add;
      ensureBlankRow();
      check();
      document.getElementById(sku.id.replace("sku", "qty")).focus();
    } else if (b.dataset.sku && b.dataset.row !== undefined) {
      e.preventDefault();
      document.getElementById("sku-" + b.dataset.row).value = b.dataset.sku;
      check();
      document.getElementById("qty-" + b.dataset.row).focus();
    }
  });
})();
