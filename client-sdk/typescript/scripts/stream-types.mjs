// Writes the realtime stream's message types (src/generated/stream.ts) from asyncapi.yaml.
//
//   node scripts/stream-types.mjs ../../asyncapi.yaml src/generated/stream.ts
//
// The document's schemas are few and plain (objects of strings, enums, integers, booleans
// and references), so a small translator whose every rule is below reads better, and
// fails more loudly on a construct it does not know, than a general JSON Schema compiler
// would. A reference into `./openapi.yaml` becomes openapi-typescript's own type for that
// schema (`components["schemas"]["Tweet"]`, from ./schema.ts), never a copy, after
// checking that the schema exists there. Which messages the client sends and which the
// server sends is read from the operations (`receive`: the client's, and their replies the
// server's; `send`: the server's). The output depends on the document alone: the same
// document gives the same bytes.
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";

import { parse } from "yaml";

const [source, target] = process.argv.slice(2);
if (source === undefined || target === undefined) {
  console.error("usage: node scripts/stream-types.mjs <asyncapi.yaml> <output.ts>");
  process.exit(2);
}
const document = parse(readFileSync(source, "utf8"));
const schemas = document.components?.schemas ?? {};
const openapiSchemas = new Map(); // file → its components.schemas, read when first referenced

const LOCAL = "#/components/schemas/";
let usesOpenapi = false; // whether the output imports ./schema.ts

function fail(message) {
  throw new Error(`${source}: ${message}`);
}

/** The object a local `$ref` (`#/a/b`) points at. */
function resolve(ref) {
  if (!ref.startsWith("#/")) fail(`unsupported reference ${ref}`);
  let node = document;
  for (const part of ref.slice(2).split("/")) {
    node = node?.[part.replaceAll("~1", "/").replaceAll("~0", "~")];
    if (node === undefined) fail(`dangling reference ${ref}`);
  }
  return node;
}

/** The TypeScript type a reference stands for. */
function referenceType(ref) {
  if (ref.startsWith(LOCAL)) {
    const name = ref.slice(LOCAL.length);
    if (!(name in schemas)) fail(`dangling reference ${ref}`);
    return name;
  }
  const external = /^\.\/openapi\.yaml#\/components\/schemas\/([A-Za-z0-9_]+)$/.exec(ref);
  if (external === null) fail(`unsupported reference ${ref}`);
  const file = join(dirname(source), "openapi.yaml");
  if (!openapiSchemas.has(file)) openapiSchemas.set(file, parse(readFileSync(file, "utf8")).components?.schemas ?? {});
  if (!(external[1] in openapiSchemas.get(file))) fail(`${ref}: no such schema in ${file}`);
  usesOpenapi = true;
  return `components["schemas"][${JSON.stringify(external[1])}]`;
}

/** A JSDoc block of `lines`, indented by `indent`, or nothing when there are none. */
function jsdoc(lines, indent) {
  const text = lines.flatMap((line) => line.split("\n")).map((line) => line.replace(/\s+$/, "").replaceAll("*/", "*\\/"));
  while (text.length > 0 && text[text.length - 1] === "") text.pop();
  if (text.length === 0) return "";
  if (text.length === 1) return `${indent}/** ${text[0]} */\n`;
  return `${indent}/**\n${text.map((line) => (line === "" ? `${indent} *` : `${indent} * ${line}`)).join("\n")}\n${indent} */\n`;
}

/** What a schema documents besides its type: its description, format and bounds. */
function docLines(schema) {
  const lines = [];
  if (schema.description !== undefined) lines.push(schema.description.trim());
  const facts = [];
  if (schema.format !== undefined) facts.push(`format \`${schema.format}\``);
  if (schema.pattern !== undefined) facts.push(`pattern \`${schema.pattern}\``);
  for (const bound of ["minLength", "maxLength", "minimum", "maximum"]) {
    if (schema[bound] !== undefined) facts.push(`${bound} ${schema[bound]}`);
  }
  if (facts.length > 0) {
    if (lines.length > 0) lines.push("");
    lines.push(`Schema: ${facts.join(", ")}.`);
  }
  return lines;
}

const SCALARS = { string: "string", integer: "number", number: "number", boolean: "boolean" };

/** The TypeScript type of `schema`, written at `indent` (for inline objects). */
function typeOf(schema, indent) {
  if (schema.$ref !== undefined) return referenceType(schema.$ref);
  if (schema.enum !== undefined) return schema.enum.map((value) => JSON.stringify(value)).join(" | ");
  if (schema.type === "object") return objectType(schema, indent);
  if (schema.type === "array") {
    const items = typeOf(schema.items ?? fail("an array without items"), indent);
    return /^[\w."[\]]+$/.test(items) ? `${items}[]` : `(${items})[]`;
  }
  const scalar = SCALARS[schema.type];
  if (scalar === undefined) fail(`unsupported schema ${JSON.stringify(schema)}`);
  return scalar;
}

function objectType(schema, indent) {
  const required = new Set(schema.required ?? []);
  const inner = `${indent}  `;
  let body = "";
  for (const [name, property] of Object.entries(schema.properties ?? {})) {
    const key = /^[A-Za-z_$][\w$]*$/.test(name) ? name : JSON.stringify(name);
    body += jsdoc(docLines(property), inner);
    body += `${inner}${key}${required.has(name) ? "" : "?"}: ${typeOf(property, inner)};\n`;
  }
  for (const name of required) if (!(name in (schema.properties ?? {}))) fail(`required ${name} is not a property`);
  return `{\n${body}${indent}}`;
}

/** Every message `operations` name, as `{ key, message }`, in order and once each. */
function messagesOf(operations, pick) {
  const found = new Map();
  for (const operation of operations) {
    for (const ref of pick(operation) ?? []) {
      const key = ref.$ref.split("/").pop();
      if (!found.has(key)) found.set(key, resolve(resolve(ref.$ref).$ref ?? ref.$ref));
    }
  }
  return found;
}

const operations = Object.values(document.operations ?? {});
const receive = operations.filter((operation) => operation.action === "receive");
const send = operations.filter((operation) => operation.action === "send");
// In the order of the channels' lists of messages, each of which must be one or the other.
const channelOrder = Object.values(document.channels ?? {}).flatMap((channel) => Object.keys(channel.messages ?? {}));
const inChannelOrder = (messages) =>
  new Map([...messages].sort(([a], [b]) => channelOrder.indexOf(a) - channelOrder.indexOf(b)));
const clientMessages = inChannelOrder(messagesOf(receive, (operation) => operation.messages));
const serverMessages = inChannelOrder([
  ...messagesOf(receive, (operation) => operation.reply?.messages),
  ...messagesOf(send, (operation) => operation.messages),
]);
for (const key of channelOrder) {
  if (clientMessages.has(key) === serverMessages.has(key)) {
    fail(`message ${key} must be sent by exactly one side (a \`receive\` operation's, or a reply or \`send\` operation's)`);
  }
}
for (const key of [...clientMessages.keys(), ...serverMessages.keys()]) {
  if (!channelOrder.includes(key)) fail(`message ${key} is in no channel`);
}

/** The schema name of a message's payload. */
function payloadName(message) {
  const ref = message.payload?.$ref;
  if (ref === undefined || !ref.startsWith(LOCAL)) fail(`message ${message.name} has no payload schema of its own`);
  return ref.slice(LOCAL.length);
}

/** The payload's discriminant (`action` or `type`): one enum value, required. */
function discriminant(message, field) {
  const schema = schemas[payloadName(message)];
  const values = schema.properties?.[field]?.enum;
  if (!schema.required?.includes(field) || values?.length !== 1) {
    fail(`message ${message.name}: its payload needs a required \`${field}\` with one value`);
  }
  return values[0];
}

// Each message's name, title and wire tag, shown on its payload's type.
const messageDocs = new Map();
for (const [messages, field] of [
  [clientMessages, "action"],
  [serverMessages, "type"],
]) {
  for (const message of messages.values()) {
    const name = payloadName(message);
    const tag = discriminant(message, field);
    const title = (message.title ?? message.name).trim();
    messageDocs.set(name, `${title}${/[.?!]$/.test(title) ? "" : "."} Its \`${field}\` is \`"${tag}"\`.`);
  }
}

let body = "";
for (const [name, schema] of Object.entries(schemas)) {
  const lines = [];
  if (messageDocs.has(name)) lines.push(messageDocs.get(name));
  const docs = docLines(schema);
  if (lines.length > 0 && docs.length > 0) lines.push("");
  lines.push(...docs);
  body += "\n" + jsdoc(lines, "");
  body +=
    schema.type === "object" && schema.$ref === undefined
      ? `export interface ${name} ${objectType(schema, "")}\n`
      : `export type ${name} = ${typeOf(schema, "")};\n`;
}

function union(messages) {
  return [...messages.values()].map((message) => `\n  | ${payloadName(message)}`).join("") + ";\n";
}
body += `\n/** Every message a client sends, told apart by \`action\`. */\nexport type ClientMessage =${union(clientMessages)}`;
body += `\n/** Every message the server sends, told apart by \`type\`. */\nexport type ServerMessage =${union(serverMessages)}`;

const header =
  "// @generated by scripts/stream-types.mjs from asyncapi.yaml. Do not edit: change the document and run `npm run generate`.\n" +
  `// ${document.info.title} ${document.info.version}: the messages of its WebSocket, the client's and the server's.\n`;
const imports = usesOpenapi ? 'import type { components } from "./schema.js";\n' : "";
mkdirSync(dirname(target), { recursive: true });
writeFileSync(target, header + imports + body);
