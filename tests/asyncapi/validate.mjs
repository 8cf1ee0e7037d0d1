// Validates AsyncAPI documents with the AsyncAPI project's own parser, offline: every document
// named on the command line must parse with no error. Warnings are printed; errors fail.
//
//   npm ci --prefix tests/asyncapi && node tests/asyncapi/validate.mjs examples/docs/*/asyncapi/*.json
import { readFile } from "node:fs/promises";
import { Parser } from "@asyncapi/parser";

const files = process.argv.slice(2);
if (files.length === 0) {
  console.error("usage: node validate.mjs <asyncapi.json>...");
  process.exit(2);
}

const severities = ["error", "warning", "info", "hint"];
const parser = new Parser();
let failed = 0;
for (const file of files) {
  const text = await readFile(file, "utf8");
  const { document, diagnostics } = await parser.parse(text, { source: file });
  const errors = diagnostics.filter((d) => d.severity === 0);
  for (const d of diagnostics.filter((d) => d.severity <= 1)) {
    const at = d.path && d.path.length ? ` at ${d.path.join("/")}` : "";
    console.log(`${file}: ${severities[d.severity] ?? d.severity}: ${d.message}${at} (${d.code})`);
  }
  if (document === undefined || errors.length > 0) {
    failed += 1;
    console.log(`${file}: INVALID (${errors.length} error(s))`);
  } else {
    const channels = document.channels().length;
    const operations = document.operations().length;
    console.log(`${file}: valid AsyncAPI ${document.version()}, ${channels} channel(s), ${operations} operation(s)`);
  }
}
console.log(`${files.length - failed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
