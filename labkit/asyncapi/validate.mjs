// Validate AsyncAPI documents with the AsyncAPI project's own parser (@asyncapi/parser 3.x).
//
//   node validate.mjs NODE_DIR            < document.json   -> one JSON array of diagnostics
//   node validate.mjs NODE_DIR --many     < [doc, doc, ...] -> one JSON array per document
//
// NODE_DIR is the npm prefix holding node_modules/@asyncapi/parser (labkit uses .node/).
// Each diagnostic is {"severity": 0..3, "code": "...", "path": [...], "message": "..."};
// severity 0 is an error, 1 a warning, 2 information, 3 a hint (Spectral's scale).
// Exit status: 0 when the documents were checked (valid or not), 2 when the parser cannot be loaded.
import { createRequire } from "node:module";
import path from "node:path";

const nodeDir = process.argv[2];
const many = process.argv.includes("--many");
if (!nodeDir) {
  process.stderr.write("usage: node validate.mjs NODE_DIR [--many] < document.json\n");
  process.exit(2);
}

let Parser;
try {
  const requireFrom = createRequire(path.join(path.resolve(nodeDir), "package.json"));
  ({ Parser } = requireFrom("@asyncapi/parser"));
} catch (err) {
  process.stderr.write(`cannot load @asyncapi/parser from ${nodeDir}: ${err.message}\n`);
  process.exit(2);
}

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return Buffer.concat(chunks).toString("utf8");
}

function simplify(diagnostic) {
  return {
    severity: diagnostic.severity,
    code: String(diagnostic.code ?? ""),
    path: (diagnostic.path ?? []).map(String),
    message: String(diagnostic.message ?? ""),
  };
}

const parser = new Parser();
const text = await readStdin();
let input;
try {
  input = JSON.parse(text);
} catch (err) {
  process.stdout.write(JSON.stringify([{ severity: 0, code: "json", path: [], message: `stdin is not JSON: ${err.message}` }]));
  process.exit(0);
}
const documents = many ? input : [input];
const answers = [];
for (const document of documents) {
  // A string keeps the parser's own JSON/YAML reading (and its line-aware paths).
  const diagnostics = await parser.validate(JSON.stringify(document));
  answers.push(diagnostics.map(simplify));
}
process.stdout.write(JSON.stringify(many ? answers : answers[0]));
