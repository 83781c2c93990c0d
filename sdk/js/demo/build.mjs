// Bundles the demo app (demo/main.ts + the SDK's sources) into the Python package, which serves
// it at / of `cariosan dev`. `node demo/build.mjs --out DIR` writes elsewhere (the freshness test).
import { build } from "esbuild";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const flag = process.argv.indexOf("--out");
const out = flag > 0 ? resolve(process.argv[flag + 1]) : resolve(here, "../../../src/cariosan/http/demo");

await build({
  entryPoints: [join(here, "main.ts")],
  outfile: join(out, "app.js"),
  bundle: true,
  format: "esm",
  target: "es2022",
  minify: true,
  legalComments: "none",
  charset: "utf8",
  logLevel: "warning",
});
