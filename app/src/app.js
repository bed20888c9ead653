// The page: load a run's export/ folder (metadata.json, labels.txt, the model it names), check
// that they agree, then classify the photographs a person drops or picks, in the browser.
// Hooks for the browser test (tests/browser/test_app.py): window.appReady (a promise),
// window.runOnPixels(pixels) (the model on already-resized RGB 0-255 pixels, no decoding or
// resizing), window.appResults (every result shown) and window.lastPixels (the last model input
// before quantization).
import { loadAndCompile, loadLiteRt, Tensor } from "./vendor/litertjs-core.js";
import { resizeBilinearAntialias } from "./resize.js";

const params = new URLSearchParams(location.search);
const EXPORT = (params.get("export") || "export/").replace(/\/?$/, "/");
const $ = (id) => document.getElementById(id);

class AppError extends Error {}

let app = null; // {meta, labels, model, height, width, threshold, bonaFide}
window.appResults = [];

async function fetchOk(name, what) {
  let response;
  try {
    response = await fetch(EXPORT + name, { cache: "no-store" });
  } catch (error) {
    throw new AppError(`Could not read ${EXPORT}${name}: ${error.message}.`);
  }
  if (!response.ok) {
    throw new AppError(
      `${what} ${EXPORT}${name} is missing (HTTP ${response.status}). Serve a run's export ` +
        "folder, e.g. make app RUN_DIR=runs/<run> (notebook 06 writes it).",
    );
  }
  return response;
}

async function readMetadata() {
  const text = await (await fetchOk("metadata.json", "The metadata file")).text();
  let meta;
  try {
    meta = JSON.parse(text);
  } catch (error) {
    throw new AppError(`${EXPORT}metadata.json is not valid JSON (${error.message}).`);
  }
  const needed = ["model_file", "classes", "input", "output"];
  const missing = needed.filter((key) => meta[key] == null);
  for (const key of ["dtype", "shape", "height", "width", "pixel_range"]) {
    if (meta.input && meta.input[key] == null) missing.push(`input.${key}`);
  }
  if (missing.length) {
    throw new AppError(
      `${EXPORT}metadata.json lacks ${missing.join(", ")}: write it with ` +
        "helpers.verification.write_metadata (notebook 06).",
    );
  }
  return meta;
}

const describe = (dtype, shape) => `${dtype} [${Array.from(shape).join(", ")}]`;

// metadata.json must describe the model it names: input and output dtype and shape, the
// pixel size, the quantization of integer tensors, and as many classes as the model outputs.
function checkAgreement(meta, labels, model) {
  const name = meta.model_file;
  const problems = [];
  const inputs = model.getInputDetails();
  const outputs = model.getOutputDetails();
  if (inputs.length !== 1 || outputs.length !== 1) {
    problems.push(`the model has ${inputs.length} inputs and ${outputs.length} outputs, not 1 and 1`);
  }
  for (const [side, actual] of [["input", inputs[0]], ["output", outputs[0]]]) {
    const said = meta[side];
    if (!actual) continue;
    const same =
      said.dtype === actual.dtype &&
      Array.isArray(said.shape) &&
      said.shape.join(",") === Array.from(actual.shape).join(",");
    if (!same) {
      problems.push(
        `metadata.json says the ${side} is ${describe(said.dtype, said.shape || [])} but ` +
          `${name}'s ${side} is ${describe(actual.dtype, actual.shape)}`,
      );
    }
    const q = said.quantization;
    if (same && actual.dtype === "int8" && !(q && q.scale > 0 && Number.isFinite(q.zero_point))) {
      problems.push(`${name}'s ${side} is int8 but metadata.json gives no scale and zero_point`);
    }
  }
  const [, h, w, c] = Array.from(inputs[0]?.shape || []);
  if (meta.input.height !== h || meta.input.width !== w || c !== 3) {
    problems.push(
      `metadata.json says ${meta.input.height}x${meta.input.width} pixels but ${name} takes ` +
        `${h}x${w}x${c}`,
    );
  }
  const k = outputs[0] ? outputs[0].shape[outputs[0].shape.length - 1] : 0;
  if (meta.classes.length !== (k === 1 ? 2 : k)) {
    problems.push(`metadata.json lists ${meta.classes.length} classes but ${name} outputs ${k}`);
  }
  if (labels.join("\n") !== meta.classes.join("\n")) {
    problems.push(`labels.txt (${labels.join(", ")}) differs from metadata.json's classes`);
  }
  const [low, high] = meta.input.pixel_range;
  if (low !== 0 || high !== 255) {
    problems.push(`metadata.json's pixel_range is [${low}, ${high}], this page feeds 0-255`);
  }
  if (problems.length) {
    throw new AppError(
      `metadata.json does not match ${name}:\n- ${problems.join("\n- ")}\n` +
        "Export the model and its metadata together (notebook 06), or fix model_file.",
    );
  }
}

async function loadExport() {
  const meta = await readMetadata();
  const labelsText = await (await fetchOk("labels.txt", "The labels file")).text();
  const labels = labelsText.split(/\r?\n/).filter((line) => line.trim() !== "");
  const response = await fetchOk(meta.model_file, "The model named in metadata.json,");
  const bytes = new Uint8Array(await response.arrayBuffer());
  await loadLiteRt(new URL("./vendor/wasm/", location.href).href);
  let model;
  try {
    model = await loadAndCompile(bytes, { accelerator: "wasm" });
  } catch (error) {
    throw new AppError(`${EXPORT}${meta.model_file} could not be loaded: ${error.message}`);
  }
  checkAgreement(meta, labels, model);
  const threshold = meta.decision_threshold ?? meta.bona_fide_threshold ?? 0.5;
  const bonaFide = meta.bona_fide_class ?? meta.classes[meta.classes.length - 1];
  const { height, width } = meta.input;
  return { meta, labels, model, height, width, threshold, bonaFide };
}

// Quantize as helpers.verification.LiteModel does: round half to even (numpy's round), add the
// zero point, clip to the dtype's range.
function roundHalfEven(x) {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

function toInput(pixels) {
  const { dtype, quantization: q } = app.meta.input;
  if (dtype === "float32") return Float32Array.from(pixels);
  if (dtype !== "int8" && dtype !== "uint8") throw new AppError(`Input dtype ${dtype} is not supported.`);
  const [lo, hi] = dtype === "int8" ? [-128, 127] : [0, 255];
  const out = dtype === "int8" ? new Int8Array(pixels.length) : new Uint8Array(pixels.length);
  for (let i = 0; i < pixels.length; i++) {
    const v = roundHalfEven(Math.fround(pixels[i] / q.scale)) + q.zero_point;
    out[i] = Math.min(Math.max(v, lo), hi);
  }
  return out;
}

// The model on RGB 0-255 pixels of the model's size: probabilities, decision, milliseconds.
async function runOnPixels(pixels) {
  if (!app) throw new AppError("The model is not loaded.");
  const expected = app.height * app.width * 3;
  if (pixels.length !== expected) {
    throw new AppError(`Got ${pixels.length} values, the model takes ${app.height}x${app.width}x3.`);
  }
  const input = new Tensor(toInput(pixels), app.meta.input.shape);
  const start = performance.now();
  let outputs;
  let raw;
  try {
    outputs = await app.model.run(input);
    raw = outputs[0].toTypedArray();
  } finally {
    input.delete();
    for (const tensor of outputs || []) tensor.delete();
  }
  const ms = performance.now() - start;
  const q = app.meta.output.quantization;
  const values = Array.from(raw, (v) => (q ? (v - q.zero_point) * q.scale : v));
  const classes = app.meta.classes;
  const probabilities = values.length === 1 ? [1 - values[0], values[0]] : values;
  const label =
    values.length === 1
      ? classes[values[0] >= app.threshold ? 1 : 0]
      : classes[probabilities.indexOf(Math.max(...probabilities))];
  const score = probabilities[classes.indexOf(app.bonaFide)];
  return { raw: Array.from(raw), probabilities, score, label, ms };
}

async function decode(file) {
  let bitmap;
  try {
    // As training reads a file: EXIF orientation applied (helpers.checks does it before
    // TensorFlow decodes), no colour-profile conversion (TensorFlow's decoder makes none).
    bitmap = await createImageBitmap(file, {
      imageOrientation: "from-image",
      colorSpaceConversion: "none",
      premultiplyAlpha: "none",
    });
  } catch {
    throw new AppError(
      `${file.name} is not an image this browser can decode (type: ${file.type || "unknown"}). ` +
        "Pick a photograph: JPEG, PNG, WebP, GIF or BMP.",
    );
  }
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const context = canvas.getContext("2d", { willReadFrequently: true });
  context.drawImage(bitmap, 0, 0);
  const { data } = context.getImageData(0, 0, bitmap.width, bitmap.height);
  bitmap.close();
  return { data, width: canvas.width, height: canvas.height };
}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

function addResult(file, result) {
  const item = document.createElement("li");
  item.className = "result";
  const bonaFide = result.label === app.bonaFide;
  const percent = (x) => `${(100 * x).toFixed(1)}%`;
  item.innerHTML = `
    <img alt="">
    <div class="verdict ${bonaFide ? "bona-fide" : "attack"}"></div>
    <div class="meter" role="img"><div class="fill"></div><div class="threshold"></div></div>
    <dl class="numbers">
      <dt>Bona fide score</dt><dd class="score"></dd>
      <dt>Threshold</dt><dd class="threshold-value"></dd>
      <dt>Inference</dt><dd class="ms"></dd>
    </dl>
    <div class="name"></div>`;
  const image = item.querySelector("img");
  image.src = URL.createObjectURL(file);
  image.alt = `The photograph ${file.name}`;
  item.querySelector(".verdict").textContent = `${result.label}${bonaFide ? " (bona fide)" : " (attack)"}`;
  item.querySelector(".score").textContent = result.score.toFixed(4);
  item.querySelector(".threshold-value").textContent = app.threshold.toFixed(4);
  item.querySelector(".ms").textContent = `${result.ms.toFixed(1)} ms`;
  item.querySelector(".name").textContent = file.name;
  const meter = item.querySelector(".meter");
  meter.setAttribute(
    "aria-label",
    `Bona fide score ${percent(result.score)} against the threshold ${percent(app.threshold)}`,
  );
  const fill = meter.querySelector(".fill");
  fill.style.width = percent(result.score);
  fill.style.background = bonaFide ? "var(--real)" : "var(--fake)";
  meter.querySelector(".threshold").style.left = percent(app.threshold);
  item.dataset.score = String(result.score);
  $("results").append(item);
  $("no-results").hidden = true;
}

async function classifyFiles(files) {
  if (!app) return;
  showError("");
  const errors = [];
  for (const file of files) {
    try {
      const image = await decode(file);
      const pixels = resizeBilinearAntialias(image.data, image.width, image.height, app.width, app.height);
      window.lastPixels = pixels;
      const result = await runOnPixels(pixels);
      const record = { file: file.name, ...result, width: image.width, height: image.height };
      window.appResults.push(record);
      addResult(file, result);
    } catch (error) {
      errors.push(error instanceof AppError ? error.message : `${file.name}: ${error.message}`);
      window.appResults.push({ file: file.name, error: errors[errors.length - 1] });
    }
  }
  showError(errors.join("\n"));
}

function wireInputs() {
  const zone = $("drop-zone");
  const input = $("file-input");
  input.addEventListener("change", () => {
    classifyFiles(Array.from(input.files)).finally(() => (input.value = ""));
  });
  zone.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      input.click();
    }
  });
  for (const name of ["dragenter", "dragover"]) {
    zone.addEventListener(name, (event) => {
      event.preventDefault();
      zone.classList.add("over");
    });
  }
  for (const name of ["dragleave", "drop"]) {
    zone.addEventListener(name, () => zone.classList.remove("over"));
  }
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    classifyFiles(Array.from(event.dataTransfer.files));
  });
}

async function main() {
  $("export-path").textContent = EXPORT;
  wireInputs();
  $("drop-zone").setAttribute("aria-disabled", "true");
  try {
    app = await loadExport();
  } catch (error) {
    $("model-info").textContent = "No model loaded.";
    showError(error instanceof AppError ? error.message : `Loading failed: ${error.message}`);
    document.body.dataset.state = "error";
    throw error;
  }
  await runOnPixels(new Float32Array(app.height * app.width * 3)); // warm-up: steady timings
  const { meta } = app;
  const q = meta.input.quantization;
  $("model-info").textContent =
    `${meta.model_file}: ${describe(meta.input.dtype, meta.input.shape)} input` +
    (q ? ` (scale ${q.scale}, zero point ${q.zero_point})` : "") +
    `; classes ${meta.classes.join(" / ")}; decision threshold ${app.threshold.toFixed(4)}`;
  $("model-info").classList.add("ready");
  $("size-hint").textContent = `${app.width}x${app.height}, bilinear with antialias, RGB 0-255`;
  $("drop-zone").removeAttribute("aria-disabled");
  document.body.dataset.state = "ready";
}

window.runOnPixels = (pixels) => runOnPixels(Float32Array.from(pixels));
window.appReady = main();
