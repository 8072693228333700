// The translation page: send the text to POST /translate, show translations and attention maps.
"use strict";

const $ = (id) => document.getElementById(id);

function element(tag, attrs = {}, text = null) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (text !== null) node.textContent = text;
  return node;
}

async function showInfo() {
  try {
    const info = await (await fetch("/info")).json();
    const model = info.model;
    const name = (spec) => (spec === null ? "none" : typeof spec === "string" ? spec : spec.type);
    $("title").textContent = `seq2seq: ${info.name}`;
    const parts = [
      `encoder ${name(model.encoder)}`,
      `attention ${name(model.attention)}`,
      `decoder ${name(model.decoder)}`,
      `vocabulary ${Object.values(info.vocab_sizes || {}).join("/")}`,
      info.export ? `exported (${info.export.quantize || "float"})` : `checkpoint ${info.checkpoint}`,
      `seq2seq ${info.seq2seq_version}`,
    ];
    $("model").textContent = parts.join(" · ");
    if (info.search.type === "beam") {
      $("search-beam").checked = true;
      if (info.search.beam_size) $("beam-size").value = info.search.beam_size;
      syncSearch();
    }
  } catch (err) {
    $("model").textContent = `could not read /info: ${err}`;
  }
}

function syncSearch() {
  const beam = $("search-beam").checked;
  $("beam-size").disabled = !beam;
  $("n-best").disabled = !beam;
}

function heatmap(hyp) {
  // rows: target pieces; columns: source pieces; cell colour: attention weight
  const table = element("table", { class: "attention" });
  const head = table.createTHead().insertRow();
  head.appendChild(element("th"));
  for (const piece of hyp.source_pieces) head.appendChild(element("th", { scope: "col" }, piece));
  const body = table.createTBody();
  hyp.attention.forEach((row, i) => {
    const tr = body.insertRow();
    tr.appendChild(element("th", { scope: "row" }, hyp.target_pieces[i]));
    row.forEach((weight, j) => {
      const cell = tr.insertCell();
      cell.style.background = `rgba(36, 86, 200, ${Math.min(1, Math.max(0, weight))})`;
      cell.title = `${hyp.target_pieces[i]} ← ${hyp.source_pieces[j]}: ${weight.toFixed(3)}`;
      cell.dataset.weight = weight;
    });
  });
  return table;
}

function showResult(item) {
  const box = element("div", { class: "result" });
  box.appendChild(element("div", { class: "source" }, item.source));
  box.appendChild(element("div", { class: "translation" }, item.text));
  const [best, ...others] = item.hypotheses;
  if (!best) return box;
  box.appendChild(element("div", { class: "score" }, `score ${best.score.toFixed(3)}`));
  if (others.length) {
    const list = element("ol", { class: "others", start: "2" });
    for (const hyp of others) list.appendChild(element("li", {}, `${hyp.text} (${hyp.score.toFixed(3)})`));
    box.appendChild(list);
  }
  if (best.attention) {
    const wrap = element("div", { class: "heatmap-wrap" });
    wrap.appendChild(heatmap(best));
    box.appendChild(wrap);
    box.appendChild(element("div", { class: "legend" },
      "attention: rows are output pieces, columns are input pieces; darker = more weight"));
  }
  return box;
}

async function translate() {
  const texts = $("source-text").value.split("\n").filter((line) => line.trim());
  $("error").textContent = "";
  if (!texts.length) {
    $("error").textContent = "Type a sentence first.";
    return;
  }
  const request = { text: texts, attention: true };
  if ($("search-beam").checked) {
    request.search = "beam";
    request.beam_size = Number($("beam-size").value);
    request.n_best = Number($("n-best").value);
  } else {
    request.search = "greedy";
  }
  $("translate").disabled = true;
  $("status").textContent = "translating…";
  const started = performance.now();
  try {
    const response = await fetch("/translate", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(request),
    });
    const answer = await response.json();
    if (!response.ok) throw new Error(answer.detail || response.statusText);
    $("results").replaceChildren(...answer.translations.map(showResult));
    $("status").textContent = `${answer.translations.length} done in ${Math.round(performance.now() - started)} ms`;
  } catch (err) {
    $("error").textContent = `Error: ${err.message}`;
    $("status").textContent = "";
  } finally {
    $("translate").disabled = false;
  }
}

$("search-greedy").addEventListener("change", syncSearch);
$("search-beam").addEventListener("change", syncSearch);
$("translate").addEventListener("click", translate);
$("source-text").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) translate();
});
showInfo();
