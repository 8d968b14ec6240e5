#!/usr/bin/env node
// Starts @vercel/cosmosdb-server (pinned in package-lock.json) with three fixes
// that make it answer as the real Cosmos DB service documents, so that the
// store contract tests test our adapter and not the emulator's bugs:
//
// 1. A point read of a missing document must answer 404 NotFound. Upstream
//    1.0.1 dereferences the missing document while checking partition keys
//    and answers 500, which a correct client must treat as "unavailable".
// 2. Operations inside a transactional batch carry no partition key of their
//    own: the service takes it from the batch's x-ms-documentdb-partitionkey
//    header. Upstream parses the (absent) per-operation key and answers 500
//    for every replace, upsert and delete in a batch.
// 3. A transactional batch is all or nothing: when one operation fails, the
//    service rolls back the ones before it and answers 424 (failed dependency)
//    for every operation but the failing one. Upstream keeps the operations
//    before a failure, so a test on the emulator could pass only because a
//    half-written batch went unnoticed, or fail for a write production never
//    makes (an idempotent replay whose first operation succeeds and whose
//    marker then conflicts left a stray ledger entry behind). The batch runs
//    in one turn of Node's event loop, so no other request sees it half done.
//
// The fixes wrap the upstream handlers before its route table is built; the
// emulator is otherwise unchanged. Usage: node cosmosdb-server.js -p PORT [--host H]

"use strict";

const readDocument = require("@vercel/cosmosdb-server/lib/handler/read-document");
const batchDocuments = require("@vercel/cosmosdb-server/lib/handler/batch-documents");

const upstreamRead = readDocument.default;
readDocument.default = (account, req, res, params) => {
  const collection = account.database(params.dbId).collection(params.collId);
  const header = req.headers["x-ms-documentdb-partitionkey"];
  if (collection.read() && header !== undefined) {
    let key;
    try {
      const parsed = JSON.parse(Array.isArray(header) ? header[0] : header);
      key = Array.isArray(parsed) ? parsed[0] : parsed;
    } catch (err) {
      key = undefined;
    }
    if (key !== undefined && !collection.document(params.docId, key).read()) {
      res.statusCode = 404;
      return { code: "NotFound", message: "Entity with the specified id does not exist in the system." };
    }
  }
  return upstreamRead(account, req, res, params);
};

const documentOperations = require("@vercel/cosmosdb-server/lib/handler/_document-operations");
const { parsePartitionKey } = require("@vercel/cosmosdb-server/lib/utils/get-partition-from-header");
const readJson = require("@vercel/cosmosdb-server/lib/json").default;
const trueHeader = require("@vercel/cosmosdb-server/lib/true-header").default;

const OPERATIONS = {
  Create: documentOperations.createOperation,
  Upsert: documentOperations.upsertOperation,
  Read: documentOperations.readOperation,
  Delete: documentOperations.deleteOperation,
  Replace: documentOperations.replaceOperation,
};

function targetOf(op) {
  const id = op.id !== undefined ? op.id : (op.resourceBody || {}).id;
  return { id, key: parsePartitionKey(op.partitionKey, id) };
}

batchDocuments.default = async (account, req, res, { dbId, collId }) => {
  const header = req.headers["x-ms-documentdb-partitionkey"];
  const body = await readJson(req);
  // Everything below is synchronous: the batch is one turn of the event loop.
  const collection = account.database(dbId).collection(collId);
  if (!collection.read()) {
    res.statusCode = 404;
    return {};
  }
  if (!Array.isArray(body)) {
    res.statusCode = 400;
    return { message: "Invalid request body" };
  }
  for (const op of body) {
    if (!op || !OPERATIONS[op.operationType]) {
      res.statusCode = 400;
      return { message: `Operation type '${op ? op.operationType : null}' is not supported in Batch.` };
    }
    if (op.partitionKey === undefined) op.partitionKey = Array.isArray(header) ? header[0] : header;
  }
  const atomic = trueHeader(req, "x-ms-cosmos-batch-atomic");
  const continueOnError = trueHeader(req, "x-ms-cosmos-batch-continue-on-error");
  const before = [];  // each applied operation's target and its document before it
  const responses = [];
  let failedAt = -1;
  for (let i = 0; i < body.length; i += 1) {
    if (failedAt >= 0 && !continueOnError) {
      responses.push({ statusCode: 424, requestCharge: 0 });
      continue;
    }
    const target = targetOf(body[i]);
    const prior = collection.document(target.id, target.key).read();
    const result = OPERATIONS[body[i].operationType](collection, body[i]);
    if (result.statusCode >= 400) {
      if (failedAt < 0) failedAt = i;
      responses.push({ statusCode: result.statusCode, requestCharge: 0 });
    } else {
      before.push({ target, prior });
      responses.push({ statusCode: result.statusCode, requestCharge: 1,
                       eTag: result.body ? result.body._etag : undefined, resourceBody: result.body });
    }
  }
  if (atomic && failedAt >= 0) {
    for (const { target, prior } of before.reverse()) {
      if (collection.document(target.id, target.key).read()) collection.documents.delete(target.id, target.key);
      if (prior) collection.documents._set(prior);
    }
    return responses.map((r, i) => (i === failedAt ? r : { statusCode: 424, requestCharge: 0 }));
  }
  return responses;
};

require("@vercel/cosmosdb-server/lib/cli");
