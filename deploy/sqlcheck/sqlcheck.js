#!/usr/bin/env node
// sqlcheck runs SQL statements against a current ClickHouse engine (chdb,
// in-process, fresh temporary session) and reports which statements fail.
// Contract (see README.md): JSON on stdin, or .sql files as arguments;
// JSON report on stdout; exit 0 when every statement passed, 1 when one
// failed, 2 on bad input.
'use strict';

const fs = require('fs');

let chdb;
try {
  chdb = require('chdb');
} catch (e) {
  process.stderr.write(
    'sqlcheck: the chdb package is not installed; run `npm ci --prefix deploy/sqlcheck` from the repository root\n' +
      `(${e.message})\n`,
  );
  process.exit(2);
}

// bind replaces each `?` outside quotes, identifiers and comments with the
// next param as a ClickHouse literal, so callers can send the same SQL text
// their driver binds client-side.
function bind(sql, params) {
  if (!params || params.length === 0) return sql;
  let out = '';
  let next = 0;
  for (let i = 0; i < sql.length; i++) {
    const c = sql[i];
    if (c === "'" || c === '"' || c === '`') {
      let j = i + 1;
      while (j < sql.length && sql[j] !== c) j += sql[j] === '\\' ? 2 : 1;
      out += sql.slice(i, j + 1);
      i = j;
    } else if (c === '-' && sql[i + 1] === '-') {
      const j = sql.indexOf('\n', i);
      const end = j < 0 ? sql.length : j;
      out += sql.slice(i, end);
      i = end - 1;
    } else if (c === '?') {
      if (next >= params.length) throw new Error(`more ? placeholders than the ${params.length} params`);
      out += literal(params[next++]);
    } else {
      out += c;
    }
  }
  if (next !== params.length) throw new Error(`${params.length} params for ${next} ? placeholders`);
  return out;
}

function literal(v) {
  if (typeof v === 'number' || typeof v === 'bigint') return String(v);
  if (typeof v === 'boolean') return v ? '1' : '0';
  if (v === null) return 'NULL';
  if (Array.isArray(v)) return '[' + v.map(literal).join(', ') + ']';
  return "'" + String(v).replace(/\\/g, '\\\\').replace(/'/g, "\\'") + "'";
}

// splitFile splits a .sql file into statements at semicolons that end a line.
function splitFile(path) {
  const text = fs.readFileSync(path, 'utf8');
  return text
    .split(/;\s*\n/)
    .map((s) => s.replace(/;\s*$/, '').trim())
    .filter((s) => s.replace(/--.*$/gm, '').trim() !== '')
    .map((sql, i) => ({ name: `${path}#${i + 1}`, sql }));
}

function readInput() {
  const files = process.argv.slice(2);
  if (files.length > 0) return { statements: files.flatMap(splitFile) };
  const text = fs.readFileSync(0, 'utf8');
  const input = JSON.parse(text);
  return Array.isArray(input) ? { statements: input } : input;
}

function main() {
  let input;
  try {
    input = readInput();
    if (!Array.isArray(input.statements)) throw new Error('want {"statements": [...]} or an array of statements');
  } catch (e) {
    process.stderr.write(`sqlcheck: bad input: ${e.message}\n`);
    return 2;
  }
  const session = new chdb.Session();
  const report = { engine: '', results: [] };
  let failed = 0;
  try {
    report.engine = JSON.parse(session.query('SELECT version() AS v', 'JSONEachRow').toString()).v;
    const database = input.database || 'sqlcheck';
    session.query(`CREATE DATABASE IF NOT EXISTS ${database}`, 'CSV');
    session.query(`USE ${database}`, 'CSV');
    input.statements.forEach((st, i) => {
      const s = typeof st === 'string' ? { sql: st } : st;
      const result = { name: s.name || `#${i + 1}`, ok: true };
      try {
        let sql = bind(s.sql, s.params);
        // parse mode checks syntax only: for DDL that needs a cluster or
        // Keeper, which an in-process engine does not have.
        if (s.mode === 'parse') sql = 'EXPLAIN AST ' + sql;
        else if (s.mode && s.mode !== 'run') throw new Error(`unknown mode ${JSON.stringify(s.mode)}`);
        const out = session.query(sql, s.format || 'JSONEachRow').toString();
        if (s.output) result.output = out;
      } catch (e) {
        result.ok = false;
        result.error = e.message;
        failed++;
      }
      report.results.push(result);
    });
  } finally {
    session.close();
  }
  process.stdout.write(JSON.stringify(report, null, 1) + '\n');
  return failed > 0 ? 1 : 0;
}

process.exitCode = main();
