#!/usr/bin/env node
// Validates published records against docs/schemas with Ajv (JSON Schema
// draft 2020-12, strict mode).
//
//   node validate.js <schemas dir> <records dir> <topic> [<topic> ...]
//
// For each topic, <records dir>/<topic>.jsonl holds one record (JSON value)
// per line, as the engine published it; every line must validate against
// <schemas dir>/<topic>.schema.json and the file must hold at least one
// record. Prints one summary line per topic; exits 1 on any failure.
'use strict';
const fs = require('fs');
const path = require('path');
const Ajv2020 = require('ajv/dist/2020');

const [schemasDir, recordsDir, ...topics] = process.argv.slice(2);
if (!schemasDir || !recordsDir || topics.length === 0) {
  console.error('usage: validate.js <schemas dir> <records dir> <topic>...');
  process.exit(2);
}
const ajv = new Ajv2020({ strict: true, strictRequired: false, allErrors: true });
let failed = 0;
for (const topic of topics) {
  const schema = JSON.parse(fs.readFileSync(path.join(schemasDir, `${topic}.schema.json`), 'utf8'));
  const validate = ajv.compile(schema);
  const file = path.join(recordsDir, `${topic}.jsonl`);
  const lines = fs.existsSync(file)
    ? fs.readFileSync(file, 'utf8').split('\n').filter((l) => l.length > 0)
    : [];
  let bad = 0;
  lines.forEach((line, i) => {
    let record;
    try {
      record = JSON.parse(line);
    } catch (e) {
      if (bad++ < 5) console.error(`${topic}:${i + 1}: not JSON: ${e.message}`);
      return;
    }
    if (!validate(record)) {
      if (bad++ < 5) {
        console.error(`${topic}:${i + 1}: ${ajv.errorsText(validate.errors)}\n  ${line.slice(0, 400)}`);
      }
    }
  });
  if (lines.length === 0) {
    console.error(`${topic}: no records to validate`);
    ++failed;
  } else if (bad > 0) {
    ++failed;
  }
  console.log(`${topic}: ${lines.length - bad} valid, ${bad} invalid`);
}
process.exit(failed === 0 ? 0 : 1);
