// Build the page into app/dist/: our sources, plus the JS and WebAssembly files of the pinned
// @litertjs/core that the page imports, so that it runs offline (no CDN, no bundler).
// Usage: node build.mjs (after `npm ci`); `make app` does both.
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, "dist");
const core = join(here, "node_modules", "@litertjs", "core");
const utils = join(here, "node_modules", "@litertjs", "wasm-utils");
// Single-threaded builds only: the threaded one needs cross-origin isolation headers, and the
// page picks "compat" by itself on browsers without relaxed SIMD.
const WASM = ["litert_wasm_internal", "litert_wasm_compat_internal"];

for (const dir of [core, utils]) {
  if (!existsSync(join(dir, "package.json"))) {
    console.error(`${dir} is missing: run \`npm ci\` in app/ first (or \`make app\`).`);
    process.exit(1);
  }
}

// @litertjs/core 2.5.3 knows the dtypes float32, int32 and uint8 only: loading a model whose
// input or output is int8 (the course's full-integer model_qt.tflite) throws "Element type
// INT8 is not supported." The WebAssembly runtime itself runs int8 tensors, so we add the
// missing row to the package's dtype table (one line, checked below so that an upgrade that
// changes the table fails here loudly instead of silently).
const UINT8_ROW = `    dtype: "uint8",
    typedArrayConstructor: Uint8Array,
    elementType: ElementType.UINT8
  }`;
const INT8_ROW = `${UINT8_ROW},
  {
    dtype: "int8",
    typedArrayConstructor: Int8Array,
    elementType: ElementType.INT8
  }`;

function patchedCore() {
  const source = readFileSync(join(core, "dist", "index.js"), "utf8");
  if (source.includes('dtype: "int8"')) return source; // a release that has it already
  if (source.split(UINT8_ROW).length !== 2) {
    console.error("@litertjs/core's dtype table changed: update the int8 patch in build.mjs.");
    process.exit(1);
  }
  return withoutSourceMap(source.replace(UINT8_ROW, INT8_ROW));
}

// The packages' source maps are not copied: drop their references (no 404 in the console).
const withoutSourceMap = (source) => source.replace(/\n\/\/# sourceMappingURL=\S*\s*$/, "\n");

rmSync(dist, { recursive: true, force: true });
mkdirSync(join(dist, "vendor", "wasm"), { recursive: true });
cpSync(join(here, "src"), dist, { recursive: true });
writeFileSync(join(dist, "vendor", "litertjs-core.js"), patchedCore());
const utilsSource = readFileSync(join(utils, "dist", "index.js"), "utf8");
writeFileSync(join(dist, "vendor", "litertjs-wasm-utils.js"), withoutSourceMap(utilsSource));
for (const name of WASM) {
  for (const ext of [".js", ".wasm"]) {
    cpSync(join(core, "wasm", name + ext), join(dist, "vendor", "wasm", name + ext));
  }
}
const version = JSON.parse(readFileSync(join(core, "package.json"), "utf8")).version;
console.log(`built ${dist} (@litertjs/core ${version}, int8 dtype added)`);
